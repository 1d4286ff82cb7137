"""Tests of hml_vae.models.vae: shapes, training records, β warm-up, .keras round trip,
bad input, config validation, and one end-to-end run of scripts/train.py and evaluate.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from hml_vae.config import make_config
from hml_vae.models import build_models
from hml_vae.models.vae import (
    BetaWarmup,
    VAEModels,
    build_conv_vae,
    build_dense_vae,
    check_images,
)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")


def _binary_images(count=64, seed=0):
    return (np.random.default_rng(seed).random((count, 28, 28)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("builder, sizes", [(build_dense_vae, (16,)), (build_conv_vae, (4, 8))])
def test_vae_models_are_named_and_have_the_right_shapes(builder, sizes):
    models = builder(sizes, latent_dim=3, seed=0)
    assert (models.encoder.name, models.decoder.name, models.vae.name) == (
        "encoder", "decoder", "vae")
    images = _binary_images(5)
    z_mean, z_log_var, z = models.encoder(images)
    assert z_mean.shape == z_log_var.shape == z.shape == (5, 3)
    assert models.decoder(z).shape == (5, 28, 28)
    assert models.vae(images).shape == (5, 28, 28)
    assert models.generate(4, seed=1).shape == (4, 28, 28)
    np.testing.assert_array_equal(models.generate(2, seed=1), models.generate(2, seed=1))


def test_vae_fit_records_reconstruction_and_kl_separately():
    models = build_dense_vae((16,), latent_dim=3, seed=0)
    models.vae.compile(optimizer="adam")
    images = _binary_images()
    history = models.vae.fit(images, images, epochs=1, batch_size=32, verbose=0,
                             validation_data=(images, images))
    logs = {key: values[0] for key, values in history.history.items()}
    for key in ("loss", "reconstruction_nll", "kl", "val_reconstruction_nll", "val_kl"):
        assert np.isfinite(logs[key]), key
    # β = 1: the loss is −ELBO = reconstruction NLL + KL (batch means, nats/image).
    np.testing.assert_allclose(logs["val_loss"], logs["val_reconstruction_nll"] + logs["val_kl"],
                               rtol=1e-4)


def test_vae_beta_warmup_raises_beta_linearly():
    models = build_dense_vae((8,), latent_dim=2, seed=0)
    models.vae.compile(optimizer="adam")
    images = _binary_images(32)
    warmup = BetaWarmup(beta=2.0, warmup_epochs=2)
    history = models.vae.fit(images, images, epochs=3, batch_size=32, verbose=0,
                             callbacks=[warmup])
    assert history.history["beta"] == [0.0, 1.0, 2.0]
    assert float(models.sampling.beta.numpy()) == 2.0


def test_vae_keras_round_trip_gives_identical_deterministic_outputs(tmp_path):
    models = build_dense_vae((16,), latent_dim=3, likelihood="gaussian", learned_sigma="global",
                             gaussian_sigma=0.5, seed=0)
    models.vae.compile(optimizer="adam")
    images = _binary_images(32)
    models.vae.fit(images, images, epochs=1, verbose=0)
    models.vae.save(tmp_path / "model.keras")
    restored = VAEModels.from_vae(keras.models.load_model(tmp_path / "model.keras"))
    np.testing.assert_array_equal(restored.reconstruct(images), models.reconstruct(images))
    np.testing.assert_array_equal(restored.encode(images)[1], models.encode(images)[1])
    np.testing.assert_array_equal(restored.reconstruction_loss.log_sigma.numpy(),
                                  models.reconstruction_loss.log_sigma.numpy())
    assert restored.sampling.get_config() == models.sampling.get_config()


def test_vae_reconstruct_is_deterministic():
    models = build_dense_vae((8,), latent_dim=2, seed=0)
    images = _binary_images(8)
    np.testing.assert_array_equal(models.reconstruct(images), models.reconstruct(images))
    assert models.reconstruct(images).min() >= 0 and models.reconstruct(images).max() <= 1


def test_vae_rejects_nan_and_out_of_range_images():
    images = _binary_images(4)
    with pytest.raises(ValueError, match="NaN"):
        check_images(np.where(images > 0, np.nan, 0.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_images(images * 255, "bernoulli")
    check_images(images * 255, "gaussian")  # real-valued data is fine for a Gaussian


@pytest.mark.parametrize("overrides, message", [
    (dict(latent_dim=0), "latent dim"),
    (dict(iwae_samples=0), "iwae samples"),
    (dict(beta=-1.0), "beta"),
    (dict(gaussian_sigma=0.0), "gaussian sigma"),
    (dict(gaussian_sigma=-0.5), "gaussian sigma"),
    (dict(likelihood="poisson"), "likelihood"),
])
def test_vae_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("vae", "tiny", **overrides)


def test_vae_build_models_follows_the_config():
    config = make_config("vae", "tiny", likelihood="gaussian", beta=0.5, free_bits=0.1)
    models = build_models(config)
    assert models.latent_dim == config.latent_dim
    assert models.likelihood == "gaussian"
    assert models.sampling.get_config()["beta"] == 0.5
    assert models.sampling.get_config()["free_bits"] == 0.1


def test_vae_default_preset_is_homl_recipe():
    config = make_config("vae")
    assert (config.hidden, config.latent_dim, config.epochs, config.batch_size,
            config.optimizer) == ((150, 100), 10, 25, 128, "nadam")


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason="Fashion-MNIST is not installed")
def test_vae_train_and_evaluate_scripts_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    train = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--model", "vae", "--preset",
         "tiny", "--limit", "1000", "--epochs", "1", "--output", str(run_dir)],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert train.returncode == 0, train.stderr
    for name in ("config.json", "model.keras", "encoder.keras", "decoder.keras",
                 "history.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    history = json.loads((run_dir / "history.json").read_text())
    assert {"kl", "reconstruction_nll", "beta"} <= set(history)
    evaluate = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), str(run_dir),
         "--iwae-samples", "16"],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["iwae_samples"] == 16
    assert metrics["epochs_trained"] == 1  # kept from training
    assert metrics["test_binarization"].startswith("static")
    for key in ("test_neg_elbo", "test_nll_iwae", "test_kl", "amortization_gap"):
        assert np.isfinite(metrics[key]), key
    np.testing.assert_allclose(metrics["test_neg_elbo"],
                               metrics["test_reconstruction_nll"] + metrics["test_kl"])
    assert 0 <= metrics["active_units"] <= metrics["latent_dim"]
