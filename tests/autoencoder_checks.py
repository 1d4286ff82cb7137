"""Checks every autoencoder family's tests share: a small real batch, .keras save/load
equality, one fit step lowering the loss, custom-layer config round trips."""

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
    """The first ``count`` (<= 512) Fashion-MNIST training images, float32 (N, 28, 28)."""
    return _fashion_images()[:count]


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


def assert_one_fit_step_lowers_loss(model: keras.Model, images: np.ndarray,
                                    learning_rate: float = 1e-3) -> tuple[float, float]:
    """Compiles ``model`` with MSE, takes one full-batch Adam step on ``images`` and checks
    the (deterministic, inference-mode) loss on them went down."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    before = model.evaluate(images, images, batch_size=len(images), verbose=0)
    model.fit(images, images, batch_size=len(images), epochs=1, shuffle=False, verbose=0)
    after = model.evaluate(images, images, batch_size=len(images), verbose=0)
    assert after < before, f"loss did not go down after one step: {before} -> {after}"
    return before, after


def assert_config_round_trip(obj, rebuild):
    """``rebuild(obj.get_config())`` has the same config as ``obj``; returns the copy."""
    copy = rebuild(obj.get_config())
    assert copy.get_config() == obj.get_config()
    return copy
