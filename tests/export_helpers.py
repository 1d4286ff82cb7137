"""Helpers the export and serving tests share: finished runs made in seconds, and test
images."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from hml_vae.config import make_config
from hml_vae.data import load_dataset


def write_untrained_run(model: str, run_dir: Path, **overrides) -> Path:
    """A finished run directory of ``model`` (tiny preset) with freshly initialised weights.

    Export only reads the config and the saved models, so the weights need not be trained:
    this checks every family's architecture in about a second instead of a training run.
    """
    from hml_vae.models import build_models
    from hml_vae.training import save_models

    config = make_config(model, "tiny", limit=600, **overrides)
    run_dir.mkdir(parents=True)
    config.save(run_dir / "config.json")
    save_models(build_models(config), run_dir)
    (run_dir / "history.json").write_text(json.dumps({"epoch": [1], "loss": [1.0]}))
    (run_dir / "metrics.json").write_text(json.dumps({"epochs_trained": 1}))
    return run_dir


@functools.lru_cache(maxsize=1)
def _cached_test_images() -> np.ndarray:
    return load_dataset("fashion_mnist", limit=600).test.images


def sample_images(count: int = 8) -> np.ndarray:
    """The first ``count`` Fashion-MNIST test images, float32 (count, 28, 28) in [0, 1]."""
    return _cached_test_images()[:count].copy()
