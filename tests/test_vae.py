"""Tests of the VAE families (hml_vae.families.vae, conv_vae) on Fashion-MNIST's
(N, 28, 28, 1): shapes, training records, β warm-up, .keras round trip, bad input, config
validation and likelihood defaults, and one run end to end (train, then evaluate again)."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from autoencoder_checks import synthetic_images

from hml_vae import families
from hml_vae.config import make_config
from hml_vae.families.bundle import VAEModels, check_images
from hml_vae.families.conv_vae import build_conv_vae
from hml_vae.families.vae import BetaWarmup, build_dense_vae

FASHION = (28, 28, 1)
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")


def _binary_images(count=64, seed=0, image_shape=FASHION):
    return (np.random.default_rng(seed).random((count, *image_shape)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("builder, sizes", [(build_dense_vae, (16,)), (build_conv_vae, (4, 8))])
def test_vae_models_are_named_and_have_the_right_shapes(builder, sizes):
    models = builder(FASHION, sizes, latent_dim=3, seed=0)
    assert (models.encoder.name, models.decoder.name, models.vae.name) == (
        "encoder", "decoder", "vae")
    images = _binary_images(5)
    z_mean, z_log_var, z = models.encoder(images)
    assert z_mean.shape == z_log_var.shape == z.shape == (5, 3)
    assert models.decoder(z).shape == (5, 28, 28, 1)
    assert models.vae(images).shape == (5, 28, 28, 1)
    assert models.generate(4, seed=1).shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(models.generate(2, seed=1), models.generate(2, seed=1))


def test_vae_fit_records_reconstruction_and_kl_separately():
    models = build_dense_vae(FASHION, (16,), latent_dim=3, seed=0)
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
    models = build_dense_vae(FASHION, (8,), latent_dim=2, seed=0)
    models.vae.compile(optimizer="adam")
    images = _binary_images(32)
    warmup = BetaWarmup(beta=2.0, warmup_epochs=2)
    history = models.vae.fit(images, images, epochs=3, batch_size=32, verbose=0,
                             callbacks=[warmup])
    assert history.history["beta"] == [0.0, 1.0, 2.0]
    assert float(models.sampling.beta.numpy()) == 2.0


def test_the_family_gives_fit_its_warmup():
    config = make_config("vae", "tiny", beta=2.0, warmup_epochs=4)
    (callback,) = config.family.callbacks(config)
    assert isinstance(callback, BetaWarmup)
    assert [callback.beta_at(epoch) for epoch in (0, 2, 4, 9)] == [0.0, 1.0, 2.0, 2.0]


def test_vae_keras_round_trip_gives_identical_deterministic_outputs(tmp_path):
    models = build_dense_vae(FASHION, (16,), latent_dim=3, likelihood="gaussian",
                             learned_sigma="global", gaussian_sigma=0.5, seed=0)
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


def test_vae_bundle_save_and_load_of_a_run_directory(tmp_path):
    config = make_config("conv_vae", "tiny", image_shape=FASHION)
    models = families.build(config)
    models.save(tmp_path)
    restored = families.load_bundle(config, tmp_path)
    assert isinstance(restored, VAEModels)
    images = _binary_images(6)
    np.testing.assert_array_equal(restored.reconstruct(images), models.reconstruct(images))
    np.testing.assert_array_equal(restored.generate(3, seed=2), models.generate(3, seed=2))


def test_vae_reconstruct_decodes_the_posterior_mean():
    """reconstruct = the Bernoulli means σ(decoder(μ)), not a decoding of a sampled z."""
    models = build_dense_vae(FASHION, (8,), latent_dim=2, seed=0)
    images = _binary_images(8)
    z_mean, z_log_var = models.encode(images)
    expected = 1 / (1 + np.exp(-np.asarray(models.decoder(z_mean), np.float64)))
    np.testing.assert_allclose(models.reconstruct(images), expected, rtol=1e-5, atol=1e-6)
    # A sampled z (σ ≈ 1 in an untrained encoder) decodes to other images.
    sampled = z_mean + np.exp(0.5 * z_log_var) * np.random.default_rng(0).standard_normal(
        z_mean.shape).astype(np.float32)
    assert not np.allclose(1 / (1 + np.exp(-np.asarray(models.decoder(sampled)))), expected,
                           atol=1e-3)


def test_vae_rejects_nan_and_out_of_range_images():
    images = _binary_images(4)
    with pytest.raises(ValueError, match="NaN"):
        check_images(np.where(images > 0, np.nan, 0.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_images(images * 255, "bernoulli")
    check_images(images * 255, "gaussian")  # real-valued data is fine for a Gaussian
    models = build_dense_vae(FASHION, (8,), latent_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        models.encode(images * 255)


@pytest.mark.parametrize("overrides, message", [
    (dict(latent_dim=0), "latent dim"),
    (dict(iwae_samples=0), "iwae samples"),
    (dict(beta=-1.0), "beta"),
    (dict(gaussian_sigma=0.0), "gaussian sigma"),
    (dict(gaussian_sigma=-0.5), "gaussian sigma"),
    (dict(likelihood="poisson"), "likelihood"),
])
@pytest.mark.parametrize("model", ["vae", "conv_vae"])
def test_vae_config_rejects_bad_values(model, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(model, "tiny", **overrides)


def test_vae_build_follows_the_config():
    config = make_config("vae", "tiny", likelihood="gaussian", beta=0.5, free_bits=0.1,
                         image_shape=FASHION)
    models = families.build(config)
    assert models.latent_dim == config.latent_dim
    assert models.likelihood == "gaussian"
    assert models.sampling.get_config()["beta"] == 0.5
    assert models.sampling.get_config()["free_bits"] == 0.1


@pytest.mark.parametrize("model", ["vae", "conv_vae"])
def test_vae_likelihood_defaults_follow_the_channels(model):
    gray = make_config(model, "tiny", image_shape=FASHION)
    assert (gray.likelihood, gray.binarize) == ("bernoulli", "dynamic")
    colour = make_config(model, "tiny", image_shape=(20, 24, 3))
    assert (colour.likelihood, colour.binarize) == ("gaussian", "none")
    # What is given is kept; unbound, nothing is decided yet.
    given = make_config(model, "tiny", likelihood="gaussian", image_shape=FASHION)
    assert (given.likelihood, given.binarize) == ("gaussian", "none")
    unbound = make_config(model, "tiny")
    assert (unbound.likelihood, unbound.binarize) == (None, None)
    assert unbound.for_images((20, 24, 3)).likelihood == "gaussian"


def test_colour_vae_trains_with_the_gaussian_decoder():
    config = make_config("conv_vae", "tiny", image_shape=(20, 24, 3))
    models = families.build(config)
    assert models.likelihood == "gaussian"
    models.vae.compile(optimizer="adam")
    images = synthetic_images(16, (20, 24, 3))
    history = models.vae.fit(images, images, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert models.reconstruct(images).shape == images.shape


def test_vae_default_preset_is_homl_recipe():
    config = make_config("vae").for_images(FASHION)
    assert (config.hidden, config.latent_dim, config.epochs, config.batch_size,
            config.optimizer, config.learning_rate) == ((150, 100), 10, 25, 128, "nadam", 1e-3)
    # The notebook's loss MSE + KL/784 on gray pixels is −ELBO/784 of a Gaussian decoder
    # with σ² = 1/2, up to a constant.
    assert (config.likelihood, config.binarize, config.beta) == ("gaussian", "none", 1.0)
    assert config.gaussian_sigma ** 2 == pytest.approx(0.5)
    bernoulli = make_config("vae", "bernoulli").for_images(FASHION)
    assert (bernoulli.likelihood, bernoulli.binarize) == ("bernoulli", "dynamic")
    assert bernoulli.hidden == config.hidden and bernoulli.epochs == config.epochs


@pytest.mark.slow
@pytest.mark.skipif(not DATA_DIR.is_dir(), reason="Fashion-MNIST is not installed")
def test_vae_train_and_evaluate_end_to_end(tmp_path):
    """What scripts/train.py and scripts/evaluate.py call: a run, then its evaluation with
    another number of importance samples."""
    from hml_vae.runs import load_run
    from hml_vae.training import evaluate_run, load_data_and_gray, train_and_evaluate

    run_dir = tmp_path / "run"
    # Dynamically binarized training, so the test split the run holds is binary.
    config = make_config("vae", "tiny", limit=2000, epochs=3, batch_size=32)
    trained = train_and_evaluate(config, run_dir)
    # HOML's MSE is computed on the gray test images: the deterministic reconstructions
    # against gray pixels, which beat predicting the training set's mean image. Against the
    # binarized pixels the same model scores far worse than that baseline.
    data, gray, bound = load_data_and_gray(config)
    assert bound.binarize == "dynamic"
    gray_test, binary_test = gray.test.images, data.test.images
    assert set(np.unique(binary_test)) == {0.0, 1.0} and len(np.unique(gray_test)) > 2
    models = load_run(run_dir).models
    gray_mse = float(np.mean((models.reconstruct(gray_test) - gray_test) ** 2))
    assert trained["test_mse_per_pixel"] == pytest.approx(gray_mse, rel=1e-5)
    mean_image_mse = float(np.mean((gray.train.images.mean(axis=0) - gray_test) ** 2))
    assert gray_mse < 0.9 * mean_image_mse, (gray_mse, mean_image_mse)
    binary_mse = float(np.mean((models.reconstruct(binary_test) - binary_test) ** 2))
    assert binary_mse > mean_image_mse
    # The BCE loss on gray pixels, recomputed from the decoder's logits of the gray images.
    logits = np.asarray(models.decoder(models.encode(gray_test)[0]), np.float64)
    bce = np.sum(np.logaddexp(0, logits) - gray_test * logits, axis=(1, 2, 3))
    assert trained["test_bce_loss_gray_pixels"] == pytest.approx(float(np.mean(bce)), rel=1e-4)
    for name in ("config.json", "model.keras", "encoder.keras", "decoder.keras",
                 "history.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    history = json.loads((run_dir / "history.json").read_text())
    assert {"kl", "reconstruction_nll", "beta"} <= set(history)
    evaluate_run(run_dir, iwae_samples=16)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["iwae_samples"] == 16
    assert metrics["epochs_trained"] == 3  # kept from training
    assert metrics["test_binarization"].startswith("static")
    for key in ("test_neg_elbo", "test_nll_iwae", "test_kl", "amortization_gap"):
        assert np.isfinite(metrics[key]), key
    np.testing.assert_allclose(metrics["test_neg_elbo"],
                               metrics["test_reconstruction_nll"] + metrics["test_kl"])
    # The importance-weighted bound is tighter than the ELBO: −log p(x) ≤ −ELBO.
    assert metrics["test_nll_iwae"] < metrics["test_neg_elbo"]
    assert metrics["test_mse_per_pixel"] == pytest.approx(gray_mse, rel=1e-5)  # gray again
    assert 0 <= metrics["active_units"] <= metrics["latent_dim"]
