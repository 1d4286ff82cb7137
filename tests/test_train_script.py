"""scripts/train.py end to end, as a user runs it: a smoke run and the error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import call_script, run_script

from hml_vae.data import load_dataset
from tests.test_training import RUN_FILES


@pytest.mark.slow
def test_smoke_run_writes_the_whole_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = run_script("train.py", "--model", "stacked", "--epochs", "1", "--limit", "2000",
                        "--output", run_dir)
    assert result.returncode == 0, result.stderr
    assert {path.name for path in run_dir.iterdir()} == RUN_FILES
    assert f"run directory: {run_dir}" in result.stdout
    assert "test MSE per pixel" in result.stdout
    assert "val_loss" in result.stdout  # Keras reports one line per epoch in a pipe
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["hidden"], config["latent_dim"], config["limit"]) == ([100], 30, 2000)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 1 and metrics["train_images"] == 2000
    # One epoch of the book's stacked model already beats predicting the training images'
    # mean image for every test image (about 0.09 per pixel on Fashion-MNIST).
    data = load_dataset("fashion_mnist", limit=2000)
    mean_image_mse = float(np.mean((data.train.images.mean(axis=0) - data.test.images) ** 2))
    assert 0 < metrics["test_mse_per_pixel"] < mean_image_mse, (
        metrics["test_mse_per_pixel"], mean_image_mse)


def assert_failed_cleanly(result, run_dir, *expected):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr
    assert not run_dir.exists()
    assert not run_dir.with_name(run_dir.name + ".incomplete").exists()


def test_missing_data_dir_is_named_and_nothing_is_written(tmp_path):
    run_dir, missing = tmp_path / "run", tmp_path / "no-such-dir"
    result = run_script("train.py", "--model", "stacked", "--data-dir", missing,
                        "--output", run_dir)
    assert_failed_cleanly(result, run_dir, f"error: {missing} (--data-dir) is not a directory")


def test_corrupt_data_dir_names_the_file(tmp_path, small_idx_dir):
    (small_idx_dir / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03 truncated")
    run_dir = tmp_path / "run"
    result = call_script("train.py", "--model", "stacked", "--data-dir", small_idx_dir,
                         "--limit", "100", "--output", run_dir)
    assert_failed_cleanly(result, run_dir, "train-images-idx3-ubyte", "truncated")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "gan"], "invalid choice: 'gan'"),
        (["--model", "stacked", "--epochs", "0"], "expected a positive integer, got 0"),
        (["--model", "stacked", "--batch-size", "-8"], "expected a positive integer, got -8"),
        (["--model", "stacked", "--limit", "0"], "expected a positive integer, got 0"),
        (["--model", "stacked", "--hidden", "100,x"], "comma-separated positive integers"),
        (["--model", "stacked", "--dataset", "cifar10"],
         "tensorflow-datasets has no prepared 'cifar10'"),
        (["--model", "stacked", "--beta", "2"], "--beta does not apply to --model stacked"),
        (["--epochs", "2"], "no model given"),
    ],
)
def test_bad_arguments_fail_before_anything_runs(tmp_path, arguments, message, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # nothing prepared there
    run_dir = tmp_path / "run"
    result = call_script("train.py", *arguments, "--output", run_dir)
    assert_failed_cleanly(result, run_dir, message)


def test_help_shows_the_flags():
    result = call_script("train.py", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--data-dir", "--epochs", "--limit", "--seed", "--output"):
        assert flag in result.stdout
