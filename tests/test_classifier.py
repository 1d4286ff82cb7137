"""hml_vae.classifier: deterministic encoders of every family, weight copies, the head."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from hml_vae import families
from hml_vae.classifier import (
    build_classifier,
    classifier_encoder,
    coding_model,
    coding_statistics,
    fresh_encoder,
    pretrained_encoder,
    set_encoder_trainable,
)
from hml_vae.config import make_config

IMAGE_SHAPE = (28, 28, 1)
IMAGES = np.random.default_rng(0).random((6, *IMAGE_SHAPE), dtype=np.float32)


def build_models(config):
    return families.build(config.for_images(IMAGE_SHAPE))


def reference_codings(models, images):
    """What the run's own encoder gives, deterministically: the coding or z_mean."""
    outputs = models.encoder(images, training=False)
    return np.asarray(outputs[0] if isinstance(outputs, (list, tuple)) else outputs)


@pytest.mark.parametrize("image_shape", [IMAGE_SHAPE, (20, 24, 3)])
@pytest.mark.parametrize("model", families.names())
def test_pretrained_encoder_reproduces_the_run_encoder_of_every_family(model, image_shape):
    keras.utils.set_random_seed(0)
    models = families.build(make_config(model, "tiny", image_shape=image_shape))
    images = np.random.default_rng(0).random((6, *image_shape), dtype=np.float32)
    encoder = pretrained_encoder(models.encoder)
    expected = reference_codings(models, images)
    assert encoder.name == "encoder"
    np.testing.assert_allclose(np.asarray(encoder(images)), expected, rtol=1e-5, atol=1e-6)
    # Deterministic even in training mode: no sampling, no input noise, no extra losses.
    np.testing.assert_allclose(np.asarray(encoder(images, training=True)), expected,
                               rtol=1e-5, atol=1e-6)
    assert not encoder.losses


def test_the_copy_is_independent_of_the_source():
    models = build_models(make_config("stacked", "tiny"))
    before = [weight.copy() for weight in models.encoder.get_weights()]
    copy = pretrained_encoder(models.encoder)
    for variable in copy.trainable_variables:
        variable.assign(variable + 1.0)
    for old, new in zip(before, models.encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_fresh_encoder_has_the_architecture_but_new_weights():
    models = build_models(make_config("conv", "tiny"))
    fresh = fresh_encoder(models.encoder)
    source = models.encoder.get_weights()
    assert [w.shape for w in fresh.get_weights()] == [w.shape for w in source]
    assert any(not np.array_equal(a, b) for a, b in
               zip(fresh.get_weights(), source, strict=True) if a.size > 1)


def test_vae_encoder_is_cut_at_the_posterior_mean():
    models = build_models(make_config("vae", "tiny"))
    coding = coding_model(models.encoder)
    assert coding.output.shape[-1] == 4
    names = {layer.name for layer in coding.layers}
    assert "z_mean" in names and not names & {"sampling", "z_log_var"}
    z_mean, _ = models.encode(IMAGES)
    np.testing.assert_allclose(np.asarray(pretrained_encoder(models.encoder)(IMAGES)), z_mean,
                               rtol=1e-5, atol=1e-6)


def test_several_outputs_without_z_mean_is_a_clear_error():
    images = keras.Input(shape=IMAGE_SHAPE)
    flat = keras.layers.Flatten()(images)
    encoder = keras.Model(images, [keras.layers.Dense(2)(flat), keras.layers.Dense(3)(flat)])
    with pytest.raises(ValueError, match="no 'z_mean' layer"):
        coding_model(encoder)


def test_classifier_outputs_class_probabilities_and_freezes_its_encoder():
    models = build_models(make_config("stacked", "tiny"))
    encoder = pretrained_encoder(models.encoder)
    stats = coding_statistics(np.asarray(encoder(IMAGES)))
    classifier = build_classifier(encoder, num_classes=10, head_units=(12,), coding_stats=stats)
    probabilities = np.asarray(classifier(IMAGES))
    assert probabilities.shape == (6, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert classifier_encoder(classifier) is encoder
    assert {"coding_normalization", "head_dense_0", "class_probabilities"} <= {
        layer.name for layer in classifier.layers}
    set_encoder_trainable(classifier, False)
    head_weights = 12 * 8 + 12 + 12 * 10 + 10  # Dense(12) on 8 codings, then Dense(10)
    assert sum(int(np.prod(v.shape)) for v in classifier.trainable_variables) == head_weights
    set_encoder_trainable(classifier, True)
    assert len(classifier.trainable_variables) == 4 + 4


def test_coding_statistics_give_dead_units_unit_variance():
    codings = np.array([[0.0, 1.0], [0.0, 3.0]])
    mean, variance = coding_statistics(codings)
    np.testing.assert_allclose(mean, [0.0, 2.0])
    np.testing.assert_allclose(variance, [1.0, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_classes": 1}, "num_classes must be an integer >= 2"),
     ({"head_units": (0,)}, "head sizes must be positive integers"),
     ({"dropout_rate": 1.0}, "dropout_rate must lie in")],
)
def test_bad_classifier_arguments_are_clear_errors(kwargs, message):
    encoder = fresh_encoder(build_models(make_config("stacked", "tiny")).encoder)
    with pytest.raises(ValueError, match=message):
        build_classifier(encoder, **kwargs)


@pytest.mark.parametrize("model", ["vae", "tied", "denoising"])
def test_encoders_reloaded_from_keras_files_work(model, tmp_path):
    config = make_config(model, "tiny", image_shape=IMAGE_SHAPE)
    models = families.build(config)
    models.save(tmp_path)
    reloaded = families.load_bundle(config, tmp_path)
    np.testing.assert_allclose(np.asarray(pretrained_encoder(reloaded.encoder)(IMAGES)),
                               reference_codings(models, IMAGES), rtol=1e-5, atol=1e-6)
