"""hml_vae: the autoencoders of Hands-On Machine Learning ch. 17 and variational autoencoders
in Keras 3. Modules, in the order data flows: data -> layers/losses -> families -> training
-> evaluation -> plots/export.

Importing the package registers every custom layer with Keras, so
``keras.saving.load_model("RUN/model.keras")`` works for every family after
``import hml_vae``. It never changes matplotlib's backend.

Keras backends (``KERAS_BACKEND``): everything runs on TensorFlow; ``layers``, ``losses``
and ``families`` (building, fitting, saving and loading models) use only ``keras.ops`` and
``keras.random`` off TensorFlow, so they run on JAX too (tested) and, written the same
way, on PyTorch; importing the package there imports no TensorFlow. An unknown or
uninstalled backend is one line (:mod:`hml_vae.backends`).
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) hides the messages
# users need; keep warnings and errors. Must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hml_vae import backends  # noqa: E402

try:
    backends.check_keras_backend()  # before anything imports Keras
except backends.BackendError as error:
    backends.print_one_line_if_uncaught(error)
    raise

from hml_vae import compile_cache  # noqa: E402

compile_cache.enable()  # before TensorFlow compiles anything

from hml_vae import layers  # noqa: E402, F401  (registers the custom layers)

__version__ = "0.2.0"

from hml_vae.api import Run, evaluate, load_run, plot, train  # noqa: E402

__all__ = ["Run", "evaluate", "load_run", "plot", "train"]
