"""Which Keras backends hml_vae runs on, checked before Keras is first imported.

``hml_vae.layers``, ``hml_vae.losses`` and every family's model builders run on each of
:data:`SUPPORTED` (set ``KERAS_BACKEND`` before the first ``import keras``); training
scripts, export, serving and ``tf.distribute`` need TensorFlow. Keras itself fails on an
unknown backend with a traceback deep inside its own import; :func:`check_keras_backend`
gives one line saying what was asked for and what can be asked for instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys

SUPPORTED = ("tensorflow", "jax", "torch")
# What to install for each backend when its package is missing.
INSTALL = {"tensorflow": "tensorflow", "jax": '"jax[cpu]"', "torch": "torch"}


class BackendError(ImportError):
    """KERAS_BACKEND names a backend hml_vae cannot run on; the message is one line."""


def requested_backend(environ=None, modules=None) -> str:
    """The backend Keras uses: the one an already imported Keras chose, else
    ``KERAS_BACKEND`` when set and non-empty (as Keras reads it), else TensorFlow.

    Args:
        environ: the environment (default ``os.environ``).
        modules: the imported modules (default ``sys.modules``).
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "keras" in modules:
        return modules["keras"].backend.backend()
    return environ.get("KERAS_BACKEND") or "tensorflow"


def check_keras_backend(environ=None, modules=None,
                        find_spec=importlib.util.find_spec) -> str:
    """The backend Keras will use, or :class:`BackendError` when hml_vae cannot use it.

    Args:
        environ, modules: as :func:`requested_backend`.
        find_spec: how to look a package up without importing it (a test passes its own).

    Returns:
        One of :data:`SUPPORTED`.
    """
    name = requested_backend(environ, modules)
    if name not in SUPPORTED:
        raise BackendError(
            f"KERAS_BACKEND={name!r} is not a backend hml_vae runs on; expected one of "
            f"{', '.join(SUPPORTED)} (unset it for tensorflow)."
        )
    if find_spec(name) is None:
        raise BackendError(
            f"KERAS_BACKEND={name!r} needs the {name} package, which is not installed: "
            f"pip install {INSTALL[name]}, or unset KERAS_BACKEND for tensorflow."
        )
    return name


def require_tensorflow(what: str) -> None:
    """Raises ValueError unless Keras runs on TensorFlow (``what`` needs its graphs,
    ``tf.data`` or ``tf.distribute``)."""
    name = requested_backend()
    if name != "tensorflow":
        raise ValueError(
            f"{what} needs the TensorFlow backend, but KERAS_BACKEND={name!r}; unset "
            f"KERAS_BACKEND (or set it to tensorflow). Only hml_vae's layers, losses and "
            f"model builders run on {', '.join(SUPPORTED[1:])}."
        )


def print_one_line_if_uncaught(error: BackendError) -> None:
    """Makes ``error``, should nothing catch it, end the program with ``error: ...`` on
    stderr and exit code 1 instead of a traceback.

    A script imports hml_vae before its own error handling exists, so a bad backend would
    otherwise show as a traceback. Only this one exception is affected: any other goes
    to the previous hook, and IPython (which does not use ``sys.excepthook``) shows the
    exception as usual.
    """
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if value is error:
            print(f"error: {error}", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    sys.excepthook = hook
