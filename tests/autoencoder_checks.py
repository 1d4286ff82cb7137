"""Checks every family's tests share: small image batches of each kind the families meet
(Fashion-MNIST 28x28x1, scikit-learn's 8x8x1 digits, colour images of any size), the
output shapes of a model bundle, .keras save/load equality, one training step lowering the
loss, custom-layer config round trips."""

from __future__ import annotations

import functools
from pathlib import Path

import keras
import numpy as np

from hml_vae.data import load_dataset


@functools.lru_cache(maxsize=1)
def _fashion_images() -> np.ndarray:
    return load_dataset("fashion_mnist", limit=512).train.images


def real_images(count: int = 64) -> np.ndarray:
    """The first ``count`` (<= 512) Fashion-MNIST training images, float32 (N, 28, 28, 1)."""
    return _fashion_images()[:count]


@functools.lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    return (load_digits().images[..., None] / 16.0).astype(np.float32)


def digits_images(count: int = 64) -> np.ndarray:
    """The first ``count`` (<= 1797) of scikit-learn's handwritten digits, (N, 8, 8, 1)."""
    return _digits()[:count]


def synthetic_images(count: int, image_shape, seed: int = 0) -> np.ndarray:
    """Smooth images of any (H, W, C) in [0, 1]: each channel is a sum of three Gaussian
    blobs at random places, so neighbouring pixels are correlated as in real pictures."""
    height, width, channels = image_shape
    rng = np.random.default_rng(seed)
    rows = np.arange(height, dtype=np.float32)[:, None]
    columns = np.arange(width, dtype=np.float32)[None, :]
    images = np.zeros((count, height, width, channels), np.float32)
    for index in range(count):
        for channel in range(channels):
            for _ in range(3):
                row, column = rng.uniform(0, height), rng.uniform(0, width)
                spread = rng.uniform(1.5, max(2.0, min(height, width) / 3))
                images[index, :, :, channel] += rng.uniform(0.3, 1.0) * np.exp(
                    -((rows - row) ** 2 + (columns - column) ** 2) / (2 * spread**2))
    return np.clip(images, 0.0, 1.0)


def images_for(image_shape, count: int = 32) -> np.ndarray:
    """Real images when a real data set has this shape, smooth synthetic ones otherwise."""
    image_shape = tuple(image_shape)
    if image_shape == (28, 28, 1):
        return real_images(count)
    if image_shape == (8, 8, 1):
        return digits_images(count)
    return synthetic_images(count, image_shape)


def assert_bundle_shapes(models, images: np.ndarray, latent_dim: int) -> None:
    """The bundle's models take and give back images shaped like ``images`` and code them
    with ``latent_dim`` numbers each."""
    count, image_shape = len(images), tuple(images.shape[1:])
    assert (models.encoder.name, models.decoder.name) == ("encoder", "decoder")
    assert models.image_shape == image_shape
    assert models.latent_dim == latent_dim
    assert models.whole.output_shape == (None, *image_shape)
    codings = models.coding(images)
    assert codings.shape == (count, latent_dim)
    assert models.decode(codings).shape == (count, *image_shape)
    assert models.reconstruct(images).shape == (count, *image_shape)
    assert np.asarray(models.whole(images)).shape == (count, *image_shape)


def assert_save_load_identical(model: keras.Model, inputs: np.ndarray, directory: Path):
    """Saves ``model`` as .keras, reloads it and checks identical predictions; returns the
    reloaded model."""
    path = Path(directory) / f"{model.name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0), rtol=0, atol=1e-6
    )
    return reloaded


def noise_states(model: keras.Model) -> list:
    """Where the model's random draws come from: the Philox states of its ``Sampling``
    layers (the ε stream of a VAE on TensorFlow) and its layers' ``SeedGenerator`` states
    (ε on other backends, dropout masks)."""
    return [variable for variable in model.non_trainable_variables
            if variable.path.endswith(("rng_state", "seed_generator_state"))]


def assert_one_training_step_lowers_loss(model: keras.Model, images: np.ndarray,
                                         loss: str | None = "mse",
                                         learning_rate: float = 1e-3,
                                         run_eagerly: bool = True) -> tuple[float, float]:
    """Compiles ``model`` (``loss`` None: a VAE, whose layers add −ELBO), takes one
    full-batch Adam step of its ``train_step`` on ``images`` and checks that the
    inference-mode loss on them went down.

    A VAE's loss depends on the ε its ``Sampling`` layer draws: both evaluations start
    from the same noise state, so they draw the same ε and differ only by the step.
    The step runs eagerly by default: tracing a ``tf.function`` for a single step costs
    seconds per model and tests nothing that one step does not. (On JAX it is the other
    way round: eagerly, XLA compiles every operation of the step on its own.)
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                  run_eagerly=run_eagerly)
    states = noise_states(model)
    start = [keras.ops.convert_to_numpy(state) for state in states]

    def evaluate() -> float:
        for state, value in zip(states, start, strict=True):
            state.assign(value)
        return float(model.test_on_batch(images, images, return_dict=True)["loss"])

    before = evaluate()
    model.train_on_batch(images, images)
    after = evaluate()
    assert after < before, f"loss did not go down after one step: {before} -> {after}"
    return before, after


def assert_config_round_trip(obj, rebuild):
    """``rebuild(obj.get_config())`` has the same config as ``obj``; returns the copy."""
    copy = rebuild(obj.get_config())
    assert copy.get_config() == obj.get_config()
    return copy
