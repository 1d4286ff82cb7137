"""Every family end to end on colour, non-square images: a run directory from an .npz of
20×24 RGB images, its figures, an export that TensorFlow's own loader serves, and
scripts/check_savedmodel.py comparing every SavedModel with its Keras models."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_script

from hml_vae import families
from hml_vae.config import make_config
from hml_vae.plots import FIGURES
from hml_vae.runs import load_run

SHAPE = (20, 24, 3)


def colour_npz(path, count=360, seed=0):
    """Three classes of RGB images: a bright square in the red, green or blue channel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 50, (count, *SHAPE), dtype=np.uint8)
    for index, label in enumerate(labels):
        top, left = rng.integers(0, 10), rng.integers(0, 12)
        images[index, top:top + 10, left:left + 12, label] = 220
    np.savez(path, images=images, labels=labels, class_names=np.array(["red", "green", "blue"]))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One finished tiny run of every family on the colour images."""
    from hml_vae.training import train_and_evaluate

    root = tmp_path_factory.mktemp("every_family")
    npz = colour_npz(root / "colour.npz")
    for name in families.names():
        train_and_evaluate(make_config(name, "tiny", npz=str(npz), steps_per_execution=4),
                           root / name)
    return root


@pytest.mark.slow
def test_every_family_trains_on_colour_images_and_draws_its_figures(runs):
    images = np.load(runs / "colour.npz")["images"] / 255
    mid_gray_mse = float(np.mean((images - 0.5) ** 2))
    for name in families.names():
        run = load_run(runs / name)
        assert run.config.image_shape == SHAPE
        expected = {figure for figure in families.get(name).figures
                    if FIGURES[figure].applies(run.config)}
        assert set(run.figures) == expected, name
        images = np.random.default_rng(1).random((3, *SHAPE), dtype=np.float32)
        assert run.models.reconstruct(images).shape == (3, *SHAPE)
        # Reconstructions on the images' scale: closer than a mid-gray guess (after one
        # tiny epoch a model is not expected to beat the mean image).
        mse = run.metrics["test_mse_per_pixel"]
        assert np.isfinite(mse) and mse < mid_gray_mse, (name, mse, mid_gray_mse)


@pytest.mark.slow
def test_every_family_exports_and_passes_check_savedmodel(runs, tmp_path):
    from hml_vae.export import export_run

    paths = [export_run(runs / name, name, tmp_path / "saved_models").path
             for name in families.names()]
    result = run_script("check_savedmodel.py", *paths, "--count", "4", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"all {len(paths)} SavedModels match their Keras models" in result.stdout
