"""Tests of the autoencoder families (hml_vae.families.stacked, tied, conv, recurrent,
denoising, sparse) on Fashion-MNIST's (N, 28, 28, 1): shapes, .keras save/load, one
training step; tied weights, denoising noise at inference, sparse penalties; bad input;
the family metrics; one run end to end. Every family on other shapes: test_families.py."""

from __future__ import annotations

import dataclasses
import types

import keras
import numpy as np
import pytest
from autoencoder_checks import (
    assert_bundle_shapes,
    assert_one_training_step_lowers_loss,
    assert_save_load_identical,
    real_images,
)

from hml_vae import families, layers
from hml_vae.config import field_choices, fields, make_config
from hml_vae.families.conv import build_conv
from hml_vae.families.denoising import NOISE_KINDS, build_denoising, corrupt_images
from hml_vae.families.recurrent import build_recurrent
from hml_vae.families.sparse import SPARSITY_KINDS, build_sparse
from hml_vae.families.stacked import build_stacked
from hml_vae.families.tied import build_tied
from hml_vae.layers import KLDivergenceRegularizer

FASHION = (28, 28, 1)

# Tiny versions of every family: (builder, coding size).
FAMILIES = {
    "stacked": (lambda: build_stacked(FASHION, hidden=(16,), latent_dim=8), 8),
    "tied": (lambda: build_tied(FASHION, hidden=(16,), latent_dim=8), 8),
    "conv": (lambda: build_conv(FASHION, filters=(4, 8, 8), latent_dim=8), 8),
    "recurrent": (lambda: build_recurrent(FASHION, hidden=(8,), latent_dim=4), 4),
    "denoising_dropout": (lambda: build_denoising(FASHION, (16,), 8, noise="dropout", seed=1),
                          8),
    "denoising_gaussian": (lambda: build_denoising(FASHION, (16,), 8, noise="gaussian",
                                                   seed=1), 8),
    "sparse_kl": (lambda: build_sparse(FASHION, (16,), 32, sparsity="kl"), 32),
    "sparse_l1": (lambda: build_sparse(FASHION, (16,), 32, sparsity="l1",
                                       sparsity_weight=1e-4), 32),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    keras.utils.set_random_seed(0)
    build, latent_dim = FAMILIES[request.param]
    return request.param, build(), latent_dim


def test_output_shapes_and_names(family):
    _, models, latent_dim = family
    images = real_images(4)
    assert images.shape == (4, 28, 28, 1)
    assert models.autoencoder.name == "autoencoder"
    assert_bundle_shapes(models, images, latent_dim)
    np.testing.assert_array_equal(models.encode(images), models.coding(images))


def test_save_load_gives_identical_predictions(family, tmp_path):
    _, models, latent_dim = family
    images = real_images(8)
    assert_save_load_identical(models.autoencoder, images, tmp_path)
    assert_save_load_identical(models.encoder, images, tmp_path)
    codings = np.random.default_rng(0).random((8, latent_dim), dtype=np.float32)
    assert_save_load_identical(models.decoder, codings, tmp_path)


def test_one_training_step_lowers_the_loss(family):
    _, models, _ = family
    assert_one_training_step_lowers_loss(models.autoencoder, real_images(64))


def test_config_choices_are_the_builders_choices():
    # The config declares each field's choices (the CLI and docs read them there); they
    # must be the ones the builders and layers accept.
    choices = {field.name: field_choices(field) for field in fields()}
    assert set(choices["noise"]) == set(NOISE_KINDS)
    assert set(choices["sparsity"]) == set(SPARSITY_KINDS)
    assert set(choices["likelihood"]) == set(layers.LIKELIHOODS)
    assert set(choices["learned_sigma"]) == set(layers.LEARNED_SIGMA)
    assert choices["model"] == families.names()


def test_build_dispatches_every_autoencoder_family():
    for model in ("stacked", "tied", "conv", "recurrent", "denoising", "sparse", "greedy"):
        models = families.build(make_config(model, preset="tiny", image_shape=FASHION))
        assert models.autoencoder.output_shape == (None, 28, 28, 1), model
        assert isinstance(models, families.AutoencoderModels), model


# --- Tied -----------------------------------------------------------------------------------


def test_tied_decoder_kernel_is_the_encoder_kernel():
    models = build_tied(FASHION, hidden=(16,), latent_dim=8)
    coding = models.encoder.get_layer("coding")
    first_transpose = models.decoder.get_layer("decoder_transpose_0")
    assert first_transpose.dense is coding
    assert first_transpose.dense.kernel is coding.kernel
    # Assign to the encoder's kernel: the decoder computes with the new one, transposed.
    new_kernel = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    coding.kernel.assign(new_kernel)
    codings = np.random.default_rng(2).random((3, 8), dtype=np.float32)
    expected = np.maximum(codings @ new_kernel.T + keras.ops.convert_to_numpy(
        first_transpose.bias), 0.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first_transpose(codings)), expected,
                               rtol=1e-5, atol=1e-6)


def test_tied_has_about_half_the_weights_of_stacked():
    tied = build_tied(FASHION, hidden=(100,), latent_dim=30).autoencoder.count_params()
    stacked = build_stacked(FASHION, hidden=(100,), latent_dim=30).autoencoder.count_params()
    # The stacked decoder's kernels (30x100 + 100x784) are the weights tying removes.
    assert tied == stacked - (30 * 100 + 100 * 784)
    assert 0.45 < tied / stacked < 0.55


def test_tied_weights_stay_tied_after_reload_and_training(tmp_path):
    models = build_tied(FASHION, hidden=(16,), latent_dim=8)
    reloaded = assert_save_load_identical(models.autoencoder, real_images(8), tmp_path)
    assert reloaded.count_params() == models.autoencoder.count_params()
    transpose = reloaded.get_layer("decoder_transpose_1")
    assert transpose.dense is reloaded.get_layer("encoder_dense_0")
    assert_one_training_step_lowers_loss(reloaded, real_images(32))
    assert transpose.dense.kernel is reloaded.get_layer("encoder_dense_0").kernel


# --- Denoising and sparse -------------------------------------------------------------------


@pytest.mark.parametrize("noise", ["gaussian", "dropout"])
def test_denoising_noise_is_identity_at_inference_only(noise):
    models = build_denoising(FASHION, hidden=(16,), latent_dim=8, noise=noise, seed=3)
    layer = models.encoder.get_layer("noise")
    flat = real_images(16).reshape(16, -1)  # the noise acts on the flattened pixels
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(flat, training=False)), flat)
    assert not np.allclose(keras.ops.convert_to_numpy(layer(flat, training=True)), flat)
    images = real_images(16)
    np.testing.assert_array_equal(models.reconstruct(images), models.reconstruct(images))


def test_sparse_coding_is_sigmoid_with_penalty_in_the_loss():
    models = build_sparse(FASHION, hidden=(16,), latent_dim=32, sparsity="kl",
                          sparsity_target=0.1, sparsity_weight=0.05)
    coding = models.encoder.get_layer("coding")
    assert isinstance(coding.activity_regularizer, KLDivergenceRegularizer)
    images = real_images(16)
    codings = models.encode(images)
    assert codings.min() > 0 and codings.max() < 1
    models.autoencoder(images)
    # Keras 3 divides an activity penalty by the batch size, as tf.keras 2 did for HOML.
    expected = float(coding.activity_regularizer(codings)) / len(images)
    assert len(models.autoencoder.losses) == 1
    np.testing.assert_allclose(float(models.autoencoder.losses[0]), expected, rtol=1e-4)


# --- Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("build, message", [
    (lambda: build_stacked(FASHION, hidden=(0,), latent_dim=8), "positive integers"),
    (lambda: build_stacked(FASHION, hidden=(100,), latent_dim=200), "undercomplete"),
    (lambda: build_tied(FASHION, hidden=(1000,), latent_dim=30), "undercomplete"),
    # 28 -> 14 -> 7 -> 3 -> 1: a fifth halving would leave no pixel.
    (lambda: build_conv(FASHION, filters=(4, 8, 8, 8, 8), latent_dim=8), "at most 4"),
    (lambda: build_conv(FASHION, filters=(4, 8), latent_dim=784), "not smaller"),
    (lambda: build_recurrent(FASHION, hidden=(8,), latent_dim=0), "positive integers"),
    (lambda: build_recurrent(FASHION, hidden=(8,), latent_dim=784), "not smaller"),
    (lambda: build_denoising(FASHION, hidden=(16,), latent_dim=8, noise="salt"),
     "unknown noise"),
    (lambda: build_denoising(FASHION, hidden=(16,), latent_dim=8, dropout_rate=1.0),
     "dropout_rate"),
    (lambda: build_denoising(FASHION, hidden=(16,), latent_dim=8, noise="gaussian",
                             noise_stddev=0.0), "noise_stddev"),
    (lambda: build_sparse(FASHION, hidden=(16,), latent_dim=32, sparsity_target=1.5),
     "(0, 1)"),
    (lambda: build_sparse(FASHION, hidden=(16,), latent_dim=32, sparsity="l2"),
     "unknown sparsity"),
])
def test_builders_reject_bad_input(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


@pytest.mark.parametrize("model, overrides, message", [
    ("sparse", {"sparsity_target": 1.0}, "sparsity target"),
    ("denoising", {"noise": "salt"}, "unknown noise"),
    ("denoising", {"dropout_rate": 1.5}, "dropout rate"),
    ("tied", {"hidden": (100,), "latent_dim": 200}, "undercomplete"),
    ("stacked", {"hidden": (100, -3)}, "positive integers"),
    # Sizes checked against the image: only once the config knows its shape.
    ("conv", {"latent_dim": 784, "image_shape": FASHION}, "not smaller"),
    ("stacked", {"hidden": (100,), "latent_dim": 30, "image_shape": (8, 8, 1)},
     "100 units after 64 inputs"),
])
def test_config_rejects_bad_input(model, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(model, preset="tiny", **overrides)


def test_config_checks_sizes_when_bound_to_the_images():
    config = make_config("stacked", hidden=(100,), latent_dim=30)  # fine for 28x28 images
    assert config.for_images(FASHION).image_shape == FASHION
    with pytest.raises(ValueError, match="undercomplete"):
        config.for_images((8, 8, 1))  # 64 pixels: a 100-unit layer would widen


def test_config_sparsity_weight_defaults_per_kind():
    assert make_config("sparse").sparsity_weight == 5e-3  # the notebook's KL weight
    assert make_config("sparse", sparsity="l1").sparsity_weight == 1e-4
    assert make_config("sparse", sparsity="l1", sparsity_weight=1e-3).sparsity_weight == 1e-3


# --- Family metrics (Family.metrics, added by hml_vae.evaluation.evaluate) -------------------


def test_corrupt_images_matches_the_training_noise():
    images = real_images(256)
    gaussian = corrupt_images(images, "gaussian", noise_stddev=0.2, seed=0)
    assert gaussian.shape == images.shape and gaussian.dtype == np.float32
    assert np.std(gaussian - images) == pytest.approx(0.2, rel=0.02)
    dropped = corrupt_images(images, "dropout", dropout_rate=0.5, seed=0)
    lit = images > 0
    zeroed = (dropped == 0) & lit
    assert zeroed.sum() / lit.sum() == pytest.approx(0.5, abs=0.01)
    kept = (dropped != 0) & lit
    np.testing.assert_allclose(dropped[kept], images[kept] * 2.0, rtol=1e-6)  # 1 / (1 - 0.5)
    np.testing.assert_array_equal(corrupt_images(images, "gaussian", seed=0), gaussian)


@pytest.mark.parametrize("model", ["denoising", "sparse", "conv"])
def test_family_metrics(model):
    overrides = {"noise": "gaussian"} if model == "denoising" else {}
    config = make_config(model, preset="tiny", image_shape=FASHION, **overrides)
    models = families.build(config)
    metrics = config.family.metrics(config, models, real_images(64))
    if model == "denoising":
        assert set(metrics) == {"test_denoising_mse_per_pixel", "test_noisy_input_mse_per_pixel"}
        # Gaussian noise of stddev 0.2 has a mean square of 0.04 per pixel.
        assert metrics["test_noisy_input_mse_per_pixel"] == pytest.approx(0.04, rel=0.05)
    elif model == "sparse":
        assert 0 < metrics["test_coding_mean_activation"] < 1
        assert metrics["sparsity_target"] == 0.1
    else:
        assert metrics == {}


def test_evaluate_adds_the_family_metrics_to_the_reconstruction_error():
    from hml_vae.evaluation import evaluate

    config = make_config("denoising", preset="tiny", image_shape=FASHION, noise="gaussian")
    models = families.build(config)
    split = types.SimpleNamespace(images=real_images(64), in_memory=True)
    metrics = evaluate(config, models, types.SimpleNamespace(valid=split, test=split))
    reconstructions = models.reconstruct(split.images)
    mse = float(np.mean((reconstructions - split.images) ** 2))
    assert metrics["test_mse_per_pixel"] == pytest.approx(mse, rel=1e-5)
    assert metrics["valid_mse_per_pixel"] == metrics["test_mse_per_pixel"]
    assert metrics["test_noisy_input_mse_per_pixel"] == pytest.approx(0.04, rel=0.05)


@pytest.mark.parametrize("filters", [(4,), (4, 8), (4, 8, 8), (4, 8, 8, 8)])
def test_conv_one_to_four_blocks_reconstruct_28x28(filters):
    models = build_conv(FASHION, filters=filters, latent_dim=6)
    assert models.encoder.output_shape == (None, 6)
    assert models.decoder.output_shape == (None, 28, 28, 1)


# --- One run end to end (hml_vae.training, what scripts/train.py calls) ----------------------


@pytest.mark.slow
def test_train_and_evaluate_conv_writes_the_run_directory(tmp_path):
    from hml_vae.data import load_dataset
    from hml_vae.runs import load_run
    from hml_vae.training import train_and_evaluate

    output = tmp_path / "conv"
    config = make_config("conv", preset="tiny", limit=1000, epochs=1)
    metrics = train_and_evaluate(config, output)
    for name in ("config.json", "model.keras", "encoder.keras", "decoder.keras",
                 "history.json", "metrics.json"):
        assert (output / name).is_file(), name
    assert metrics["image_shape"] == [28, 28, 1]
    assert not (tmp_path / "conv.incomplete").exists()
    run = load_run(output)
    assert run.config == dataclasses.replace(config, image_shape=FASHION)
    # The saved models are the ones that were evaluated.
    test_images = load_dataset("fashion_mnist", limit=1000).test.images
    reconstructions = run.models.reconstruct(test_images)
    assert metrics["test_mse_per_pixel"] == pytest.approx(
        float(np.mean((reconstructions - test_images) ** 2)), rel=1e-5)

