"""Tests of hml_vae.families.recurrent's ``unroll``: unrolled LSTMs compute what looping
ones do (loss and gradients of one training step), and the family builds its default."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from autoencoder_checks import digits_images, real_images

from hml_vae import families
from hml_vae.config import make_config
from hml_vae.families import recurrent
from hml_vae.families.recurrent import build_recurrent

FASHION = (28, 28, 1)


def lstm_layers(models) -> list:
    return [layer for model in (models.encoder, models.decoder) for layer in model.layers
            if isinstance(layer, keras.layers.LSTM)]


def loss_and_gradients(models, images: np.ndarray, graph: bool):
    """The MSE of one training batch and its gradients, eagerly or in a graph as ``fit``
    runs them (where TensorFlow may reorder the float operations of a loop's body)."""
    def step(images):
        with tf.GradientTape() as tape:
            reconstruction = models.whole(images, training=True)
            loss = tf.reduce_mean(keras.losses.mean_squared_error(images, reconstruction))
        return loss, tape.gradient(loss, models.whole.trainable_weights)

    loss, gradients = (tf.function(step) if graph else step)(tf.constant(images))
    return float(loss), [gradient.numpy() for gradient in gradients]


# The default recipe's sizes on Fashion-MNIST eagerly; in a graph, 8x8 digits (tracing 28
# unrolled steps and their gradients takes a minute on a busy CPU).
@pytest.mark.parametrize("load_images,hidden,latent_dim,graph", [
    (real_images, (100,), 30, False),
    (digits_images, (8,), 4, True),
], ids=["fashion-eager", "digits-graph"])
def test_unrolled_lstms_give_the_same_loss_and_gradients(load_images, hidden, latent_dim,
                                                         graph):
    images = load_images(16)
    keras.utils.set_random_seed(0)
    looping = build_recurrent(images.shape[1:], hidden, latent_dim, unroll=False)
    unrolled = build_recurrent(images.shape[1:], hidden, latent_dim, unroll=True)
    # Without this, the comparison below would compare a model with itself.
    assert [layer.unroll for layer in lstm_layers(looping)] == [False] * (len(hidden) * 2 + 1)
    assert [layer.unroll for layer in lstm_layers(unrolled)] == [True] * (len(hidden) * 2 + 1)
    unrolled.whole.set_weights(looping.whole.get_weights())

    loss, gradients = loss_and_gradients(looping, images, graph)
    unrolled_loss, unrolled_gradients = loss_and_gradients(unrolled, images, graph)

    assert loss > 0.01  # an untrained model: the gradients below are not all ~0
    np.testing.assert_allclose(unrolled_loss, loss, rtol=1e-6)
    assert len(unrolled_gradients) == len(gradients) == len(looping.whole.trainable_weights)
    for weight, expected, got in zip(looping.whole.trainable_weights, gradients,
                                     unrolled_gradients, strict=True):
        scale = np.abs(expected).max()
        assert scale > 0, weight.path
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale,
                                   err_msg=weight.path)


def test_the_family_builds_its_default_unroll_and_saves_it(tmp_path):
    config = make_config("recurrent", "tiny", image_shape=FASHION)
    models = families.build(config)
    assert {layer.unroll for layer in lstm_layers(models)} == {recurrent.UNROLL}
    # A saved model keeps the setting (Keras' LSTM config carries it).
    path = tmp_path / "unrolled.keras"
    build_recurrent(FASHION, (8,), 4, unroll=True).whole.save(path)
    loaded = keras.saving.load_model(path)
    assert {layer.unroll for layer in loaded.get_layer("encoder").layers
            if isinstance(layer, keras.layers.LSTM)} == {True}
