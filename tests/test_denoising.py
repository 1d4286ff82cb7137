"""The denoising family's noise layers (hml_vae.families.denoising): Keras' Dropout and
GaussianNoise semantics drawn from a Philox state saved with the weights; masks against
binomial tolerances, exact scaling, identity at inference, one stream per seed that a
saved or checkpointed model continues, and the same distribution as ``corrupt_images``."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from autoencoder_checks import assert_config_round_trip, noise_states, real_images

from hml_vae.families.denoising import (
    StatefulDropout,
    StatefulGaussianNoise,
    build_denoising,
    corrupt_images,
    make_noise_layer,
)

FASHION = (28, 28, 1)
# Values in [0.1, 1): a zero in a layer's output is a dropped value, never an input.
INPUTS = np.random.default_rng(0).uniform(0.1, 1.0, (64, 784)).astype(np.float32)
SIGMAS = 5  # a check fails by chance with probability < 1e-6


def numpy(tensor) -> np.ndarray:
    return keras.ops.convert_to_numpy(tensor)


def binomial_tolerance(probability: float, count: int) -> float:
    """SIGMAS standard deviations of the fraction of successes in ``count`` trials."""
    return SIGMAS * math.sqrt(probability * (1 - probability) / count)


def kept(layer, inputs=INPUTS) -> np.ndarray:
    """(N, D) bool: the values one training call keeps."""
    return numpy(layer(inputs, training=True)) != 0


def one_layer_model(layer) -> keras.Model:
    inputs = keras.Input((INPUTS.shape[1],))
    return keras.Model(inputs, layer(inputs))


# --- Dropout ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.5, 0.2, 0.9])
def test_dropout_keeps_one_minus_rate_of_the_values(rate):
    layer = StatefulDropout(rate, seed=1)
    for _ in range(3):  # each call, not just the first
        fraction = kept(layer).mean()
        assert abs(fraction - (1 - rate)) < binomial_tolerance(1 - rate, INPUTS.size), fraction


@pytest.mark.parametrize("rate", [0.5, 0.2, 0.3])
def test_dropout_scales_kept_values_like_keras(rate):
    outputs = numpy(StatefulDropout(rate, seed=2)(INPUTS, training=True))
    keep = outputs != 0
    # Keras' Dropout multiplies by 1 / (1 - rate) in the inputs' dtype: bit for bit.
    scale = np.float32(1.0 / (1.0 - rate))
    np.testing.assert_array_equal(outputs[keep], INPUTS[keep] * scale)
    keras_outputs = numpy(keras.layers.Dropout(rate, seed=2)(INPUTS, training=True))
    keras_keep = keras_outputs != 0
    np.testing.assert_array_equal(keras_outputs[keras_keep], INPUTS[keras_keep] * scale)


@pytest.mark.parametrize("make", [lambda: StatefulDropout(0.5, seed=3),
                                  lambda: StatefulGaussianNoise(0.2, seed=3)],
                         ids=["dropout", "gaussian"])
def test_noise_is_the_identity_at_inference(make):
    layer = make()
    np.testing.assert_array_equal(numpy(layer(INPUTS)), INPUTS)
    np.testing.assert_array_equal(numpy(layer(INPUTS, training=False)), INPUTS)
    np.testing.assert_array_equal(one_layer_model(layer).predict(INPUTS, verbose=0), INPUTS)
    assert not np.allclose(numpy(layer(INPUTS, training=True)), INPUTS)


def test_successive_dropout_masks_are_independent_draws():
    layer = StatefulDropout(0.5, seed=4)
    first, second = kept(layer), kept(layer)
    # Two independent masks disagree on 2 p (1 - p) of the values; a repeated mask on none.
    differing = (first != second).mean()
    assert abs(differing - 0.5) < binomial_tolerance(0.5, INPUTS.size), differing


def test_dropout_mask_shape_broadcasts_like_keras():
    outputs = numpy(StatefulDropout(0.5, noise_shape=(None, 1), seed=5)(INPUTS, training=True))
    rows_kept = (outputs != 0).all(axis=1)
    assert ((outputs == 0).all(axis=1) | rows_kept).all()  # whole rows kept or dropped
    assert 0 < rows_kept.sum() < len(INPUTS)
    np.testing.assert_array_equal(outputs[rows_kept], INPUTS[rows_kept] * np.float32(2.0))


def test_dropout_under_a_16_bit_policy_draws_the_same_masks():
    float32, bfloat16 = StatefulDropout(0.5, seed=6), StatefulDropout(
        0.5, seed=6, dtype="mixed_bfloat16")
    outputs = bfloat16(INPUTS, training=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "bfloat16"
    np.testing.assert_array_equal(numpy(outputs) != 0, kept(float32))


# --- Gaussian noise -----------------------------------------------------------------------


def test_gaussian_noise_has_mean_zero_and_the_given_deviation():
    stddev = 0.2
    layer = StatefulGaussianNoise(stddev, seed=7)
    first = numpy(layer(INPUTS, training=True)) - INPUTS
    second = numpy(layer(INPUTS, training=True)) - INPUTS
    count = INPUTS.size
    assert abs(first.mean()) < SIGMAS * stddev / math.sqrt(count)
    # The sample variance of n normal values has a standard deviation of σ² √(2 / n).
    assert abs(first.var() - stddev**2) < SIGMAS * stddev**2 * math.sqrt(2 / count)
    assert abs(np.corrcoef(first.ravel(), second.ravel())[0, 1]) < SIGMAS / math.sqrt(count)


# --- One stream per seed, saved with the weights ------------------------------------------


@pytest.mark.parametrize("make", [lambda seed: StatefulDropout(0.5, seed=seed),
                                  lambda seed: StatefulGaussianNoise(0.2, seed=seed)],
                         ids=["dropout", "gaussian"])
def test_a_seed_fixes_the_sequence_of_draws(make):
    def draws(seed):
        layer = make(seed)
        return [numpy(layer(INPUTS, training=True)) for _ in range(3)]

    same, again, other = draws(8), draws(8), draws(9)
    for one, two in zip(same, again, strict=True):
        np.testing.assert_array_equal(one, two)
    assert not np.array_equal(same[1], same[0])
    assert not any(np.array_equal(one, two) for one, two in zip(same, other, strict=True))


@pytest.mark.parametrize("make", [lambda: StatefulDropout(0.5, seed=10),
                                  lambda: StatefulGaussianNoise(0.2, seed=10)],
                         ids=["dropout", "gaussian"])
def test_a_saved_model_continues_the_sequence(make, tmp_path):
    model = one_layer_model(make())
    model(INPUTS, training=True)  # the stream moves on
    model.save(tmp_path / "noise.keras")
    model.save_weights(tmp_path / "noise.weights.h5")  # what a checkpoint holds
    expected = numpy(model(INPUTS, training=True))  # the next draw

    reloaded = keras.saving.load_model(tmp_path / "noise.keras")
    assert type(reloaded.layers[-1]) is type(model.layers[-1])
    np.testing.assert_array_equal(numpy(reloaded(INPUTS, training=True)), expected)
    resumed = one_layer_model(make())  # a new run from the same config, then its checkpoint
    resumed.load_weights(tmp_path / "noise.weights.h5")
    np.testing.assert_array_equal(numpy(resumed(INPUTS, training=True)), expected)


@pytest.mark.slow
def test_an_xla_training_step_advances_the_saved_state(tmp_path):
    images = real_images(64)

    def trained(epochs):
        keras.utils.set_random_seed(0)
        models = build_denoising(FASHION, (16,), 8, seed=11)
        models.whole.compile("adam", "mse", jit_compile=True)
        if epochs:
            models.whole.fit(images, images, batch_size=32, epochs=epochs, shuffle=False,
                             verbose=0)
        return models.whole

    def philox_state(model) -> np.ndarray:
        (state,) = [state for state in noise_states(model) if state.path.endswith("rng_state")]
        return numpy(state)

    two_epochs = trained(2)
    # 4 steps of 32 × 784 uniform values, 4 per Philox block: the counter moved by 25,088.
    np.testing.assert_array_equal(philox_state(two_epochs), [4 * 32 * 784 // 4, 0, 11])
    # One epoch, its checkpoint, one more epoch from there: the same masks, the same model.
    one_epoch = trained(1)
    one_epoch.save_weights(tmp_path / "epoch1.weights.h5")
    resumed = trained(0)
    resumed.optimizer.build(resumed.trainable_variables)  # as fit has when it restores
    resumed.load_weights(tmp_path / "epoch1.weights.h5")
    resumed.fit(images, images, batch_size=32, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(philox_state(resumed), philox_state(two_epochs))
    for weight, expected in zip(resumed.weights, two_epochs.weights, strict=True):
        np.testing.assert_allclose(numpy(weight), numpy(expected), rtol=1e-5, atol=1e-6)


# --- The family ---------------------------------------------------------------------------


@pytest.mark.parametrize("noise, kind, keras_kind", [
    ("dropout", StatefulDropout, keras.layers.Dropout),
    ("gaussian", StatefulGaussianNoise, keras.layers.GaussianNoise),
])
def test_the_family_uses_the_stateful_layers_and_they_round_trip(noise, kind, keras_kind):
    layer = make_noise_layer(noise, seed=12)
    # Still Keras' noise layers for code that strips them (hml_vae.classifier).
    assert isinstance(layer, kind) and isinstance(layer, keras_kind)
    copy = assert_config_round_trip(layer, kind.from_config)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is kind and restored.get_config() == copy.get_config()


def test_training_noise_and_the_evaluation_corruption_have_one_distribution():
    images = real_images(64).reshape(64, -1)
    lit = images > 0.05  # where a dropped pixel is seen
    layer = make_noise_layer("dropout", dropout_rate=0.5, seed=13)
    trained = numpy(layer(images, training=True))
    corrupted = corrupt_images(images, "dropout", dropout_rate=0.5, seed=13)
    fractions = [(noisy[lit] != 0).mean() for noisy in (trained, corrupted)]
    tolerance = SIGMAS * math.sqrt(2 * 0.25 / lit.sum())  # the difference of two fractions
    assert abs(fractions[0] - fractions[1]) < tolerance, fractions
    for noisy in (trained, corrupted):
        keep = noisy != 0
        np.testing.assert_allclose(noisy[keep], images[keep] * 2.0, rtol=1e-6)

    gaussian = make_noise_layer("gaussian", noise_stddev=0.2, seed=13)
    deviations = [np.std(numpy(gaussian(images, training=True)) - images),
                  np.std(corrupt_images(images, "gaussian", noise_stddev=0.2, seed=13) - images)]
    # Each sample deviation is within 5 × σ / √(2n) of σ.
    assert deviations == pytest.approx([0.2, 0.2], abs=SIGMAS * 0.2 / math.sqrt(2 * images.size))
