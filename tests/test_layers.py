"""Tests of hml_vae.layers."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from autoencoder_checks import assert_config_round_trip, assert_save_load_identical

from hml_vae.layers import DenseTranspose, KLDivergenceRegularizer, kl_divergence_bernoulli

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
