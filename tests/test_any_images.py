"""Runs on the user's own images, end to end as a user runs them: a folder of colour
PNGs of a non-square size and an .npz of scikit-learn's 8×8 digits, through
scripts/train.py and scripts/plot.py; bad folders fail with one line and write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import call_script, run_script
from PIL import Image

from hml_vae.runs import load_run


def write_colour_folder(root, count_per_class=40, size=(20, 24), seed=0):
    """Two classes of RGB images the test can tell apart: red-ish and blue-ish blobs."""
    rng = np.random.default_rng(seed)
    height, width = size
    for label, channel in (("red", 0), ("blue", 2)):
        folder = root / label
        folder.mkdir(parents=True)
        for index in range(count_per_class):
            image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
            top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
            image[top:top + height // 2, left:left + width // 2, channel] = 230
            Image.fromarray(image).save(folder / f"{index}.png")
    return root


@pytest.mark.slow
def test_a_colour_folder_trains_plots_and_reloads(tmp_path):
    images = write_colour_folder(tmp_path / "photos")
    run_dir = tmp_path / "run"
    result = run_script("train.py", "--model", "conv_vae", "--preset", "tiny", "--images",
                        images, "--epochs", "2", "--output", run_dir)
    assert result.returncode == 0, result.stderr
    run = load_run(run_dir)
    assert run.config.image_shape == (20, 24, 3)
    # Colour data: a Gaussian decoder, no binarization.
    assert (run.config.likelihood, run.config.binarize) == ("gaussian", "none")
    assert run.metrics["image_shape"] == [20, 24, 3]
    assert "20×24 → 10×12 → 5×6" in (run_dir / "report.md").read_text()
    reconstructions = run.models.reconstruct(np.zeros((2, 20, 24, 3), np.float32))
    assert reconstructions.shape == (2, 20, 24, 3)
    assert {"reconstructions", "samples", "latent_map"} <= set(run.figures)
    # A colour figure is drawn in colour: its pixels are not all gray.
    figure = np.asarray(Image.open(run.figures["reconstructions"]).convert("RGB"), np.int32)
    assert np.abs(figure[..., 0] - figure[..., 2]).max() > 100

    result = run_script("plot.py", run_dir)
    assert result.returncode == 0, result.stderr
    assert "reconstructions.png" in result.stdout


@pytest.mark.slow
def test_an_npz_of_digits_trains_every_number_of_a_vae(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = tmp_path / "digits.npz"
    np.savez(path, images=(digits.images * 255 / 16).astype(np.uint8), labels=digits.target)
    run_dir = tmp_path / "run"
    result = run_script("train.py", "--model", "vae", "--preset", "tiny", "--npz", path,
                        "--epochs", "3", "--no-plots", "--output", run_dir)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["image_shape"] == [8, 8, 1] and config["likelihood"] == "bernoulli"
    # 64 binary pixels: a model that learned nothing pays 64·log 2 = 44.4 nats per image.
    assert metrics["test_nll_iwae"] < 64 * np.log(2)
    assert metrics["test_nll_iwae"] <= metrics["test_neg_elbo"] + 0.5


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: [Image.fromarray(np.zeros((size, size), np.uint8)).save(
            root / f"{size}.png") for size in (16, 20)], "sizes"),
        (lambda root: (root / "notes.png").write_text("not an image"), "notes.png"),
        (lambda root: None, "no images"),
    ],
)
def test_a_bad_folder_is_one_line_and_nothing_is_written(tmp_path, make, message):
    folder = tmp_path / "images"
    folder.mkdir()
    make(folder)
    run_dir = tmp_path / "run"
    result = call_script("train.py", "--model", "stacked", "--images", folder,
                         "--output", run_dir)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not run_dir.exists() and not run_dir.with_name("run.incomplete").exists()


def test_a_streamed_folder_trains_like_any_run_and_greedy_says_it_needs_memory(tmp_path):
    from hml_vae.config import make_config
    from hml_vae.training import train_and_evaluate

    folder = tmp_path / "gray"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(140):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
            folder / f"{index}.png")
    config = make_config("stacked", "tiny", images=str(folder), streaming="stream",
                         batch_size=16, make_plots=False)
    metrics = train_and_evaluate(config, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.config.image_shape == (16, 16, 1) and run.config.streaming == "stream"
    # Every test image of the folder's split is evaluated (140 images: 20 test).
    assert metrics["test_images"] == 20 and metrics["train_images"] == 110
    with pytest.raises(ValueError, match="greedy holds the training images in memory"):
        train_and_evaluate(make_config("greedy", "tiny", images=str(folder),
                                       streaming="stream", batch_size=16), tmp_path / "greedy")
    assert not (tmp_path / "greedy").exists()
    assert not (tmp_path / "greedy.incomplete").exists()
