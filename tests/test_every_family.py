"""Every family end to end on colour, non-square images: a run directory from an .npz of
20×24 RGB images (train_and_evaluate: one tiny epoch, metrics, figures, report), then an
export of each run that scripts/check_savedmodel.py loads with TensorFlow's own loader in
a fresh process, compares with the run's Keras models and feeds bad requests."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_script

from hml_vae import families
from hml_vae.runs import load_run

COLOUR_SHAPE = (20, 24, 3)

# The figures each family draws (latent_grid only with a 2-D latent space).
AUTOENCODER_FIGURES = {"reconstructions", "latent_map", "interpolation", "training_curves"}
FIGURES_BY_FAMILY = {
    "stacked": AUTOENCODER_FIGURES, "tied": AUTOENCODER_FIGURES, "conv": AUTOENCODER_FIGURES,
    "recurrent": AUTOENCODER_FIGURES, "greedy": AUTOENCODER_FIGURES,
    "denoising": AUTOENCODER_FIGURES | {"denoising"},
    "sparse": AUTOENCODER_FIGURES | {"sparsity"},
    "hashing": AUTOENCODER_FIGURES | {"hash_buckets"},
    "vae": AUTOENCODER_FIGURES | {"samples"}, "conv_vae": AUTOENCODER_FIGURES | {"samples"},
}


def write_colour_npz(path, count=360, seed=0):
    """Three classes of RGB images: a bright block in the red, green or blue channel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 50, (count, *COLOUR_SHAPE), dtype=np.uint8)
    for index, label in enumerate(labels):
        top, left = rng.integers(0, 10), rng.integers(0, 12)
        images[index, top:top + 10, left:left + 12, label] = 220
    np.savez(path, images=images, labels=labels, class_names=np.array(["red", "green", "blue"]))
    return path


@pytest.fixture(scope="module")
def every_family_runs(tmp_path_factory):
    """A finished tiny run of every family on the colour images; the directory holds one
    run per family name and ``colour.npz``. XLA is off: compiling would cost more than
    these runs."""
    from hml_vae.config import make_config
    from hml_vae.training import train_and_evaluate

    root = tmp_path_factory.mktemp("every_family")
    npz = write_colour_npz(root / "colour.npz")
    for name in families.names():
        train_and_evaluate(make_config(name, "tiny", npz=str(npz), steps_per_execution=4,
                                       jit_compile=False), root / name)
    return root


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


@pytest.mark.slow
def test_every_family_exports_and_check_savedmodel_passes(every_family_runs, tmp_path):
    from hml_vae.export import export_run

    paths = [export_run(every_family_runs / name, name, tmp_path / "saved").path
             for name in families.names()]
    # One check_savedmodel.py process (one TensorFlow start-up) for all of them: each is
    # loaded with tf.saved_model.load, every signature is compared with the run's Keras
    # models on the run's own test images, and bad requests are fed to the C++ session.
    result = run_script("check_savedmodel.py", *paths, "--count", "4", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shown = result.stdout
    assert (f"all {len(paths)} SavedModels match their Keras models and refuse bad requests"
            in shown)
    assert shown.count("signature_def['serving_default']:") == len(paths)
    assert shown.count("images float32 (None, 20, 24, 3) ->") == 2 * len(paths)  # + encode
    variational = sum(families.get(name).variational for name in families.names())
    assert shown.count("  generate: OK") == variational
    for signature in ("serving_default", "encode", "decode"):
        assert shown.count(f"  {signature}: OK") == len(paths)
    assert shown.count("the first 4 test images of the run's data set") == len(paths)
    assert shown.count("bad requests refused with a message naming the input") == len(paths)
    assert ("images must be float32 of shape (batch, 20, 24, 3) in [0, 1]; got shape "
            "[2 20 24]") in shown
