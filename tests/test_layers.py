"""Tests of hml_vae.layers, one section per group of layers."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from autoencoder_checks import assert_config_round_trip, assert_save_load_identical

from hml_vae import losses
from hml_vae.layers import (
    DenseTranspose,
    KLDivergenceRegularizer,
    ReconstructionLoss,
    Sampling,
    kl_divergence_bernoulli,
)

# --- HOML ch. 17 autoencoders: DenseTranspose and sparsity regularizers ----------------------


def built_dense(inputs: int = 6, units: int = 3, name: str = "tied_dense"):
    dense = keras.layers.Dense(units, activation="relu", name=name)
    dense.build((None, inputs))
    return dense


def test_dense_transpose_computes_transposed_kernel_plus_own_bias():
    dense = built_dense()
    layer = DenseTranspose(dense, activation="sigmoid", name="transpose")
    codings = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    outputs = keras.ops.convert_to_numpy(layer(codings))
    kernel = keras.ops.convert_to_numpy(dense.kernel)
    expected = 1.0 / (1.0 + np.exp(-(codings @ kernel.T)))  # bias starts at zero
    assert outputs.shape == (4, 6)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    # It owns only its bias: (6,), not another kernel.
    assert [tuple(weight.shape) for weight in layer._trainable_variables] == [(6,)]


def test_dense_transpose_config_round_trip():
    layer = DenseTranspose(built_dense(), activation="relu", name="transpose")
    layer.build((None, 3))
    copy = assert_config_round_trip(layer, DenseTranspose.from_config)
    assert copy.name == "transpose"
    assert copy.activation is keras.activations.relu
    assert copy.dense.units == 3 and copy.dense.built


def test_dense_transpose_save_load_in_a_model(tmp_path):
    inputs = keras.Input((6,))
    dense = keras.layers.Dense(3, activation="relu", name="coding")
    codings = dense(inputs)
    model = keras.Model(inputs, DenseTranspose(dense, name="transpose")(codings), name="tied")
    reloaded = assert_save_load_identical(
        model, np.random.default_rng(1).random((5, 6), dtype=np.float32), tmp_path)
    assert reloaded.get_layer("transpose").dense is reloaded.get_layer("coding")


@pytest.mark.parametrize("dense, message", [
    (keras.layers.Dense(3), "not built"),
    (keras.layers.Conv1D(3, 1), "keras.layers.Dense"),
])
def test_dense_transpose_rejects_unusable_layers(dense, message):
    with pytest.raises(ValueError, match=message):
        DenseTranspose(dense)(np.zeros((2, 3), dtype=np.float32))


def test_dense_transpose_rejects_wrong_input_width():
    with pytest.raises(ValueError, match="expects inputs with 3 features"):
        DenseTranspose(built_dense())(np.zeros((2, 5), dtype=np.float32))


def test_sparsity_kl_regularizer_matches_hand_computed_value():
    # Unit means over the batch: (0.2 + 0.4) / 2 = 0.3 and (0.05 + 0.15) / 2 = 0.1.
    activations = np.array([[0.2, 0.05], [0.4, 0.15]], dtype=np.float32)
    regularizer = KLDivergenceRegularizer(weight=0.5, target=0.1)
    # KL(0.1 || 0.3) = 0.1 ln(0.1 / 0.3) + 0.9 ln(0.9 / 0.7) = 0.1163...; KL(0.1 || 0.1) = 0.
    by_hand = 0.5 * (0.1 * math.log(0.1 / 0.3) + 0.9 * math.log(0.9 / 0.7))
    assert by_hand == pytest.approx(0.05816, abs=1e-5)
    np.testing.assert_allclose(float(regularizer(activations)), by_hand, rtol=1e-5)


def test_sparsity_kl_divergence_is_zero_at_target_and_positive_elsewhere():
    means = np.array([0.1, 0.01, 0.5, 0.99], dtype=np.float32)
    divergences = keras.ops.convert_to_numpy(kl_divergence_bernoulli(0.1, means))
    assert divergences[0] == pytest.approx(0.0, abs=1e-7)
    assert (divergences[1:] > 0).all()


def test_sparsity_kl_regularizer_is_finite_for_saturated_units():
    activations = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    assert np.isfinite(float(KLDivergenceRegularizer(0.05, 0.1)(activations)))


def test_sparsity_kl_regularizer_config_round_trip_and_registration():
    regularizer = KLDivergenceRegularizer(weight=0.02, target=0.2)
    copy = assert_config_round_trip(regularizer, KLDivergenceRegularizer.from_config)
    assert (copy.weight, copy.target) == (0.02, 0.2)
    serialized = keras.saving.serialize_keras_object(regularizer)
    assert serialized["registered_name"] == "hml_vae>KLDivergenceRegularizer"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, KLDivergenceRegularizer) and restored.target == 0.2


@pytest.mark.parametrize("weight, target, message", [
    (0.05, 0.0, r"\(0, 1\)"), (0.05, 1.0, r"\(0, 1\)"), (0.0, 0.1, "positive"),
])
def test_sparsity_kl_regularizer_rejects_bad_values(weight, target, message):
    with pytest.raises(ValueError, match=message):
        KLDivergenceRegularizer(weight=weight, target=target)


# =========================================================================================
# Variational autoencoder: Sampling and ReconstructionLoss
# =========================================================================================


def _posterior(batch=4, latent_dim=3, seed=0):
    rng = np.random.default_rng(seed)
    z_mean = rng.normal(size=(batch, latent_dim)).astype(np.float32)
    z_log_var = rng.normal(scale=0.3, size=(batch, latent_dim)).astype(np.float32)
    return z_mean, z_log_var


def test_sampling_sample_mean_and_variance():
    z_mean = np.full((20_000, 2), [1.5, -2.0], np.float32)
    z_log_var = np.full((20_000, 2), np.log([0.25, 4.0]), np.float32)
    z = np.asarray(Sampling(seed=3)([z_mean, z_log_var]))
    np.testing.assert_allclose(z.mean(axis=0), [1.5, -2.0], atol=0.05)
    np.testing.assert_allclose(z.var(axis=0), [0.25, 4.0], rtol=0.05)


def test_sampling_is_reproducible_with_its_seed():
    z_mean, z_log_var = _posterior()
    first = Sampling(seed=7)([z_mean, z_log_var])
    second = Sampling(seed=7)([z_mean, z_log_var])
    np.testing.assert_array_equal(first, second)


def test_sampling_draws_fresh_noise_each_call_from_its_state():
    z_mean, z_log_var = _posterior(batch=64)
    layer = Sampling(seed=7)
    first, second = layer([z_mean, z_log_var]), layer([z_mean, z_log_var])
    assert not np.allclose(first, second)
    assert any(weight is layer.rng_state for weight in layer.non_trainable_weights)


def test_sampling_noise_state_survives_save_and_load(tmp_path):
    # The state is a weight: a reloaded model (or a resumed run) continues the stream
    # where the saved one stopped instead of replaying it.
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, Sampling(seed=5, name="sampling")([inputs, inputs]))
    z_mean, z_log_var = _posterior()
    model(z_mean)  # advance the state past its initial value
    model.save(tmp_path / "sampling.keras")
    reloaded = keras.saving.load_model(tmp_path / "sampling.keras")
    np.testing.assert_array_equal(model(z_mean), reloaded(z_mean))


def test_sampling_gradients_reach_the_encoder():
    # A tiny encoder: gradients of a function of z must reach both heads' weights.
    images = keras.Input(shape=(5,))
    z_mean = keras.layers.Dense(2, name="z_mean")(images)
    z_log_var = keras.layers.Dense(2, name="z_log_var")(images)
    z = Sampling(seed=1, beta=0.0, name="sampling")([z_mean, z_log_var])
    encoder = keras.Model(images, z)
    x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(encoder(x) - 3.0))
    gradients = tape.gradient(loss, encoder.trainable_weights)
    assert len(gradients) == 4  # kernel and bias of both heads
    for gradient in gradients:
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_sampling_adds_kl_loss_scaled_by_beta():
    z_mean, z_log_var = _posterior()
    layer = Sampling(beta=1.0, seed=0)
    layer([z_mean, z_log_var])
    assert len(layer.losses) == 1
    kl = float(np.mean(losses.kl_divergence(z_mean, z_log_var)))
    np.testing.assert_allclose(float(layer.losses[0]), kl, rtol=1e-5)
    layer.beta.assign(0.25)
    layer([z_mean, z_log_var])
    assert len(layer.losses) == 1  # losses are reset at every call
    np.testing.assert_allclose(float(layer.losses[0]), 0.25 * kl, rtol=1e-5)


def test_sampling_loss_appears_in_model_losses():
    inputs = [keras.Input(shape=(3,)), keras.Input(shape=(3,))]
    model = keras.Model(inputs, Sampling(beta=2.0, seed=0)(inputs))
    z_mean, z_log_var = _posterior()
    model([z_mean, z_log_var])
    kl = float(np.mean(losses.kl_divergence(z_mean, z_log_var)))
    np.testing.assert_allclose([float(loss) for loss in model.losses], [2.0 * kl], rtol=1e-5)


def test_sampling_beta_is_a_non_trainable_weight():
    layer = Sampling(beta=0.5)
    assert any(weight is layer.beta for weight in layer.non_trainable_weights)
    assert not layer.trainable_weights


def test_sampling_free_bits_floor_each_dimension():
    z_mean = np.zeros((4, 3), np.float32)  # KL = 0 in every dimension
    layer = Sampling(free_bits=0.5, seed=0)
    layer([z_mean, np.zeros_like(z_mean)])
    np.testing.assert_allclose(float(layer.losses[0]), 3 * 0.5)
    z_mean = np.full((4, 3), 2.0, np.float32)  # KL = 2 per dimension, above the floor
    layer([z_mean, np.zeros_like(z_mean)])
    np.testing.assert_allclose(float(layer.losses[0]), 3 * 2.0, rtol=1e-6)


def test_sampling_deterministic_returns_the_mean():
    z_mean, z_log_var = _posterior()
    z = Sampling(deterministic=True)([z_mean, z_log_var])
    np.testing.assert_array_equal(z, z_mean)


def test_sampling_config_round_trip():
    layer = Sampling(beta=0.3, free_bits=0.1, seed=5, deterministic=True, name="sampling")
    config = layer.get_config()
    for key, value in dict(beta=0.3, free_bits=0.1, seed=5, deterministic=True).items():
        assert config[key] == value
    clone = Sampling.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Sampling) and restored.get_config() == config


@pytest.mark.parametrize("beta, free_bits", [(-0.1, 0.0), (1.0, -1.0)])
def test_sampling_rejects_negative_beta_or_free_bits(beta, free_bits):
    with pytest.raises(ValueError, match=">= 0"):
        Sampling(beta=beta, free_bits=free_bits)


def test_reconstruction_loss_config_round_trip():
    layer = ReconstructionLoss(likelihood="gaussian", gaussian_sigma=0.2, learned_sigma="pixel",
                               image_shape=(28, 28, 1), name="reconstruction_loss")
    config = layer.get_config()
    assert ReconstructionLoss.from_config(config).get_config() == config
    assert tuple(layer.log_sigma.shape) == (28, 28, 1)
    np.testing.assert_allclose(layer.log_sigma.numpy(), np.log(0.2), rtol=1e-6)


def test_reconstruction_loss_adds_bernoulli_nll_and_passes_outputs_through():
    rng = np.random.default_rng(0)
    images = (rng.random((3, 28, 28, 1)) > 0.5).astype(np.float32)
    logits = rng.normal(size=(3, 28, 28, 1)).astype(np.float32)
    layer = ReconstructionLoss()
    np.testing.assert_array_equal(layer([images, logits]), logits)
    expected = float(np.mean(losses.bernoulli_nll(images, logits)))
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-5)


def test_reconstruction_loss_per_pixel_sigma_of_colour_images_matches_numpy():
    # One learned σ per pixel value of a (20, 24, 3) image: the NLL sums over H·W·C.
    rng = np.random.default_rng(1)
    shape = (20, 24, 3)
    images = rng.random((2, *shape)).astype(np.float32)
    means = rng.random((2, *shape)).astype(np.float32)
    layer = ReconstructionLoss(likelihood="gaussian", gaussian_sigma=0.5, learned_sigma="pixel",
                               image_shape=shape)
    log_sigma = rng.normal(scale=0.2, size=shape).astype(np.float32)
    layer.log_sigma.assign(log_sigma)
    variance = np.exp(2.0 * log_sigma.astype(np.float64))
    expected = 0.5 * np.sum((images - means) ** 2 / variance + np.log(2 * np.pi * variance),
                            axis=(1, 2, 3))
    np.testing.assert_allclose(
        np.asarray(layer.negative_log_likelihood(images, means)), expected, rtol=1e-5)
    np.testing.assert_array_equal(layer([images, means]), means)
    np.testing.assert_allclose(float(layer.losses[0]), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(likelihood="poisson"), dict(gaussian_sigma=0.0),
                                    dict(gaussian_sigma=-1.0), dict(learned_sigma="layer")])
def test_reconstruction_loss_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ReconstructionLoss(**kwargs)
