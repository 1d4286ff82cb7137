"""Helpers the export and serving tests share: finished runs made in seconds (of any family
and image shape), synthetic colour images and Fashion-MNIST test images."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from hml_vae.config import Config, make_config
from hml_vae.data import load_for_config

# Colour and not square, so that a height/width or channel mix-up cannot go unnoticed.
COLOUR_SHAPE = (20, 24, 3)


def colour_images(count: int, image_shape=COLOUR_SHAPE, seed: int = 0) -> np.ndarray:
    """Smooth synthetic colour images (count, H, W, 3) in [0, 1]: a random colour gradient
    each, so that the models see some structure."""
    rng = np.random.default_rng(seed)
    height, width, channels = image_shape
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    columns = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]  # (1, W, 1)
    start, across, down = rng.random((3, count, 1, 1, channels), dtype=np.float32)
    return (0.5 * start + 0.25 * across * columns + 0.25 * down * rows).astype(np.float32)


def write_run(model: str, run_dir: Path, image_shape=(28, 28, 1), train_images=None,
              **overrides) -> Path:
    """A finished run directory of ``model`` (tiny preset) for images of ``image_shape``.

    Export only reads the config and the saved models, so the run is not trained with
    ``train_and_evaluate`` (tens of seconds): its models are fitted for one epoch on
    ``train_images`` when given, else left with their initial weights, which checks a
    family's architecture in about a second.
    """
    from hml_vae import families
    from hml_vae.training import compile_model

    config = make_config(model, "tiny", image_shape=tuple(image_shape), jit_compile=False,
                         **overrides)
    models = families.build(config)
    history = {"epoch": [1], "loss": [1.0]}
    if train_images is not None:
        # Compiled only to be fitted: an unfitted optimizer in model.keras makes loading it
        # warn that the optimizer's variables do not match.
        compile_model(config, models.whole, config.family.loss)
        targets = train_images if config.family.loss is not None else None
        fitted = models.whole.fit(train_images, targets, epochs=1, batch_size=32, verbose=0)
        history["loss"] = [float(fitted.history["loss"][-1])]
    run_dir.mkdir(parents=True)
    config.save(run_dir / "config.json")
    models.save(run_dir)
    (run_dir / "history.json").write_text(json.dumps(history))
    (run_dir / "metrics.json").write_text(json.dumps({"epochs_trained": 1}))
    return run_dir


def write_colour_run(model: str, run_dir: Path, train: bool = True) -> Path:
    """A run of ``model`` on synthetic colour images of :data:`COLOUR_SHAPE`, its data saved
    as ``<run_dir>.npz`` and named in its config (``npz``)."""
    images = colour_images(96)
    data_file = run_dir.with_suffix(".npz")
    data_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(data_file, images=np.round(images * 255).astype(np.uint8),
             labels=np.zeros(len(images), np.int64))
    return write_run(model, run_dir, COLOUR_SHAPE, images if train else None,
                     npz=str(data_file))


@functools.lru_cache(maxsize=1)
def _cached_test_images() -> np.ndarray:
    # limit 1,500 training images: a test split of 273.
    images, _ = load_for_config(Config(binarize="none", limit=1500)).test.head(256)
    return images


def sample_images(count: int = 8) -> np.ndarray:
    """The first ``count`` (<= 256) Fashion-MNIST test images, float32 (count, 28, 28, 1)
    in [0, 1]."""
    return _cached_test_images()[:count].copy()
