"""Every family end to end on colour, non-square images: a run directory from an .npz of
20×24 RGB images (conftest.every_family_runs), its metrics, figures and report. The same
runs are exported and checked by scripts/check_savedmodel.py in tests/test_export.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import COLOUR_SHAPE

from hml_vae import families
from hml_vae.runs import load_run

# The figures each family draws (latent_grid only with a 2-D latent space).
AUTOENCODER_FIGURES = {"reconstructions", "latent_map", "interpolation", "training_curves"}
FIGURES_BY_FAMILY = {
    "stacked": AUTOENCODER_FIGURES, "tied": AUTOENCODER_FIGURES, "conv": AUTOENCODER_FIGURES,
    "recurrent": AUTOENCODER_FIGURES, "greedy": AUTOENCODER_FIGURES,
    "denoising": AUTOENCODER_FIGURES | {"denoising"},
    "sparse": AUTOENCODER_FIGURES | {"sparsity"},
    "vae": AUTOENCODER_FIGURES | {"samples"}, "conv_vae": AUTOENCODER_FIGURES | {"samples"},
}


@pytest.mark.slow
def test_every_family_trains_on_colour_images_and_draws_its_figures(every_family_runs):
    runs = every_family_runs
    assert set(FIGURES_BY_FAMILY) == set(families.names())
    images = np.load(runs / "colour.npz")["images"] / 255
    mid_gray_mse = float(np.mean((images - 0.5) ** 2))
    for name in families.names():
        run = load_run(runs / name)
        assert run.config.image_shape == COLOUR_SHAPE
        assert set(run.figures) == FIGURES_BY_FAMILY[name], name
        report = run.report.read_text()
        assert "could not be made" not in report
        assert all(f"figures/{figure}.png" in report for figure in run.figures)
        noise = np.random.default_rng(1).random((3, *COLOUR_SHAPE), dtype=np.float32)
        assert run.models.reconstruct(noise).shape == (3, *COLOUR_SHAPE)
        # Reconstructions on the images' scale: closer than a mid-gray guess (after one
        # tiny epoch a model is not expected to beat the mean image).
        mse = run.metrics["test_mse_per_pixel"]
        assert np.isfinite(mse) and mse < mid_gray_mse, (name, mse, mid_gray_mse)
