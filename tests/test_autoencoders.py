"""Tests of hml_vae.models.autoencoders: every family's shapes, .keras save/load, one fit
step; tied weights, denoising noise at inference, sparse penalties; bad input; the train
CLI."""

from __future__ import annotations

import json
import types

import keras
import numpy as np
import pytest
from autoencoder_checks import (
    assert_one_fit_step_lowers_loss,
    assert_save_load_identical,
    real_images,
)
from conftest import run_script

from hml_vae import config as config_module
from hml_vae.config import make_config
from hml_vae.evaluation import corrupt_images, family_metrics
from hml_vae.layers import KLDivergenceRegularizer
from hml_vae.models import autoencoders, build_models
from hml_vae.models.autoencoders import (
    build_conv,
    build_denoising,
    build_recurrent,
    build_sparse,
    build_stacked,
    build_tied,
)

# Tiny versions of every family: (builder, coding size).
FAMILIES = {
    "stacked": (lambda: build_stacked(hidden=(16,), latent_dim=8), 8),
    "tied": (lambda: build_tied(hidden=(16,), latent_dim=8), 8),
    "conv": (lambda: build_conv(filters=(4, 8, 8), latent_dim=8), 8),
    "recurrent": (lambda: build_recurrent(hidden=(8,), latent_dim=4), 4),
    "denoising_dropout": (lambda: build_denoising((16,), 8, noise="dropout", seed=1), 8),
    "denoising_gaussian": (lambda: build_denoising((16,), 8, noise="gaussian", seed=1), 8),
    "sparse_kl": (lambda: build_sparse((16,), 32, sparsity="kl"), 32),
    "sparse_l1": (lambda: build_sparse((16,), 32, sparsity="l1", sparsity_weight=1e-4), 32),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    keras.utils.set_random_seed(0)
    build, latent_dim = FAMILIES[request.param]
    return request.param, build(), latent_dim


def test_output_shapes_and_names(family):
    _, models, latent_dim = family
    images = real_images(4)
    assert (models.encoder.name, models.decoder.name, models.autoencoder.name) == (
        "encoder", "decoder", "autoencoder")
    codings = models.encode(images)
    assert codings.shape == (4, latent_dim)
    assert models.decode(codings).shape == (4, 28, 28)
    assert models.reconstruct(images).shape == (4, 28, 28)


def test_save_load_gives_identical_predictions(family, tmp_path):
    _, models, latent_dim = family
    images = real_images(8)
    assert_save_load_identical(models.autoencoder, images, tmp_path)
    assert_save_load_identical(models.encoder, images, tmp_path)
    codings = np.random.default_rng(0).random((8, latent_dim), dtype=np.float32)
    assert_save_load_identical(models.decoder, codings, tmp_path)


def test_one_fit_step_lowers_the_loss(family):
    _, models, _ = family
    assert_one_fit_step_lowers_loss(models.autoencoder, real_images(64))


def test_config_and_builders_agree_on_choices():
    # config.py cannot import the builders (it must load without TensorFlow): same lists.
    assert config_module.NOISE_KINDS == autoencoders.NOISE_KINDS
    assert config_module.SPARSITY_KINDS == autoencoders.SPARSITY_KINDS
    assert config_module.PIXELS == autoencoders.PIXELS
    assert config_module.MAX_CONV_BLOCKS == len(autoencoders.CONV_MAP_SIZES) - 1


def test_build_models_dispatches_every_family():
    for model in ("stacked", "tied", "conv", "recurrent", "denoising", "sparse", "greedy"):
        models = build_models(make_config(model, preset="tiny"))
        assert models.autoencoder.output_shape == (None, 28, 28), model


# --- Tied -----------------------------------------------------------------------------------


def test_tied_decoder_kernel_is_the_encoder_kernel():
    models = build_tied(hidden=(16,), latent_dim=8)
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
    tied = build_tied(hidden=(100,), latent_dim=30).autoencoder.count_params()
    stacked = build_stacked(hidden=(100,), latent_dim=30).autoencoder.count_params()
    # The stacked decoder's kernels (30x100 + 100x784) are the weights tying removes.
    assert tied == stacked - (30 * 100 + 100 * 784)
    assert 0.45 < tied / stacked < 0.55


def test_tied_weights_stay_tied_after_reload_and_training(tmp_path):
    models = build_tied(hidden=(16,), latent_dim=8)
    reloaded = assert_save_load_identical(models.autoencoder, real_images(8), tmp_path)
    assert reloaded.count_params() == models.autoencoder.count_params()
    transpose = reloaded.get_layer("decoder_transpose_1")
    assert transpose.dense is reloaded.get_layer("encoder_dense_0")
    assert_one_fit_step_lowers_loss(reloaded, real_images(32))
    assert transpose.dense.kernel is reloaded.get_layer("encoder_dense_0").kernel


# --- Denoising and sparse -------------------------------------------------------------------


@pytest.mark.parametrize("noise", ["gaussian", "dropout"])
def test_denoising_noise_is_identity_at_inference_only(noise):
    models = build_denoising(hidden=(16,), latent_dim=8, noise=noise, seed=3)
    layer = models.encoder.get_layer("noise")
    flat = real_images(16).reshape(16, -1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(flat, training=False)), flat)
    assert not np.allclose(keras.ops.convert_to_numpy(layer(flat, training=True)), flat)
    images = real_images(16)
    np.testing.assert_array_equal(models.reconstruct(images), models.reconstruct(images))


def test_sparse_coding_is_sigmoid_with_penalty_in_the_loss():
    models = build_sparse(hidden=(16,), latent_dim=32, sparsity="kl", sparsity_target=0.1,
                          sparsity_weight=0.05)
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
    (lambda: build_stacked(hidden=(0,), latent_dim=8), "positive integers"),
    (lambda: build_stacked(hidden=(100,), latent_dim=200), "undercomplete"),
    (lambda: build_tied(hidden=(1000,), latent_dim=30), "undercomplete"),
    (lambda: build_conv(filters=(4, 8, 8, 8), latent_dim=8), "at most 3"),
    (lambda: build_conv(filters=(4, 8), latent_dim=784), "not smaller"),
    (lambda: build_recurrent(hidden=(8,), latent_dim=0), "positive integers"),
    (lambda: build_denoising(hidden=(16,), latent_dim=8, noise="salt"), "unknown noise"),
    (lambda: build_denoising(hidden=(16,), latent_dim=8, dropout_rate=1.0), "dropout_rate"),
    (lambda: build_sparse(hidden=(16,), latent_dim=32, sparsity_target=1.5), "(0, 1)"),
    (lambda: build_sparse(hidden=(16,), latent_dim=32, sparsity="l2"), "unknown sparsity"),
])
def test_builders_reject_bad_input(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


@pytest.mark.parametrize("model, overrides, message", [
    ("sparse", {"sparsity_target": 1.0}, "sparsity target"),
    ("denoising", {"noise": "salt"}, "unknown noise"),
    ("denoising", {"dropout_rate": 1.5}, "dropout rate"),
    ("tied", {"hidden": (100,), "latent_dim": 200}, "undercomplete"),
    ("conv", {"latent_dim": 784}, "not smaller"),
    ("stacked", {"hidden": (100, -3)}, "positive integers"),
])
def test_config_rejects_bad_input(model, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(model, preset="tiny", **overrides)


def test_config_sparsity_weight_defaults_per_kind():
    assert make_config("sparse").sparsity_weight == 0.05
    assert make_config("sparse", sparsity="l1").sparsity_weight == 1e-4
    assert make_config("sparse", sparsity="l1", sparsity_weight=1e-3).sparsity_weight == 1e-3


# --- CLI ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_cli_conv_smoke(tmp_path):
    output = tmp_path / "conv"
    result = run_script("train.py", "--model", "conv", "--preset", "tiny",
                        "--limit", "1000", "--epochs", "1", "--output", str(output))
    assert result.returncode == 0, result.stderr
    for name in ("config.json", "model.keras", "encoder.keras", "decoder.keras",
                 "history.json", "metrics.json"):
        assert (output / name).is_file(), name
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 < metrics["test_mse_per_pixel"] < 1
    assert not (tmp_path / "conv.incomplete").exists()


@pytest.mark.parametrize("args", [
    ["--model", "sparse", "--sparsity-target", "1.5"],
    ["--model", "tied", "--hidden", "100", "--latent-dim", "200"],
])
def test_train_cli_bad_input_is_one_line_error(tmp_path, args):
    output = tmp_path / "run"
    result = run_script("train.py", "--preset", "tiny", *args, "--output", str(output))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert list(tmp_path.iterdir()) == []


# --- Family metrics (hml_vae.evaluation) ----------------------------------------------------


def test_corrupt_images_matches_the_training_noise():
    images = real_images(256)
    gaussian = corrupt_images(images, "gaussian", noise_stddev=0.2, seed=0)
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
    config = make_config(model, preset="tiny", noise="gaussian")
    models = build_models(config)
    data = types.SimpleNamespace(test=types.SimpleNamespace(images=real_images(64)))
    metrics = family_metrics(config, models, data)
    if model == "denoising":
        assert set(metrics) == {"test_denoising_mse_per_pixel", "test_noisy_input_mse_per_pixel"}
        # Gaussian noise of stddev 0.2 has a mean square of 0.04 per pixel.
        assert metrics["test_noisy_input_mse_per_pixel"] == pytest.approx(0.04, rel=0.05)
    elif model == "sparse":
        assert 0 < metrics["test_coding_mean_activation"] < 1
        assert metrics["sparsity_target"] == 0.1
    else:
        assert metrics == {}


@pytest.mark.parametrize("filters", [(4,), (4, 8), (4, 8, 8)])
def test_conv_one_to_three_blocks_reconstruct_28x28(filters):
    models = build_conv(filters=filters, latent_dim=6)
    assert models.encoder.output_shape == (None, 6)
    assert models.decoder.output_shape == (None, 28, 28)
