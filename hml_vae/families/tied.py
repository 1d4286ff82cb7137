"""Tied-weights autoencoder (HOML ch. 17): the stacked one whose decoder layers are
:class:`~hml_vae.layers.DenseTranspose` layers of the encoder's, so it has about half the
weights."""

from __future__ import annotations

import keras

from hml_vae.families import blocks
from hml_vae.families.bundle import AutoencoderModels
from hml_vae.families.family import register
from hml_vae.families.stacked import BOOK_STACKED, TINY_DENSE, dense_family
from hml_vae.layers import DenseTranspose


def build_tied(image_shape, hidden=(100,), latent_dim: int = 30,
               activation: str = "relu") -> AutoencoderModels:
    """HOML's tied-weights autoencoder.

    The autoencoder is one flat Functional graph over the encoder's and decoder's layers
    (not encoder and decoder nested as sub-models): Keras can only keep a layer shared
    between two places of a saved model when both sit in the same graph's config, and the
    tie must survive ``.keras`` save and load.

    Args and Returns: as :func:`hml_vae.families.stacked.build_stacked`.
    """
    hidden = tuple(hidden)
    blocks.check_undercomplete("tied", (*hidden, latent_dim), blocks.pixel_count(image_shape))
    images = keras.Input(shape=image_shape, name="images")
    encoder_layers = [
        *blocks.dense_layers(hidden, activation, "encoder_dense"),
        keras.layers.Dense(latent_dim, activation=activation, name="coding"),
    ]
    coding = blocks.apply(encoder_layers, keras.layers.Flatten(name="flatten")(images))
    encoder = keras.Model(images, coding, name="encoder")

    # The mirror image: decoder layer i is tied to encoder layer (last - i). The final
    # layer, tied to the first encoder layer, restores the pixels and is linear, as in
    # the stacked model.
    decoder_layers = [
        DenseTranspose(dense, activation=activation if dense is not encoder_layers[0] else None,
                       name=f"decoder_transpose_{index}")
        for index, dense in enumerate(reversed(encoder_layers))
    ]
    decoder_layers.append(keras.layers.Reshape(tuple(image_shape), name="reconstruction"))
    codings = keras.Input(shape=(latent_dim,), name="codings")
    decoder = keras.Model(codings, blocks.apply(decoder_layers, codings), name="decoder")
    autoencoder = keras.Model(images, blocks.apply(decoder_layers, coding), name="autoencoder")
    return AutoencoderModels(encoder, decoder, autoencoder)


FAMILY = register(dense_family(
    name="tied",
    summary="the stacked autoencoder with the decoder's kernels tied to the encoder's "
            "(DenseTranspose): half the weights",
    build=lambda config: build_tied(blocks.require_image_shape(config), config.hidden,
                                    config.latent_dim),
    # HOML 3rd ed. ch. 17's notebook ("Tying weights"): the stacked model's layers, trained
    # 10 epochs (not the stacked model's 20).
    presets={"default": {**BOOK_STACKED, "epochs": 10}, "tiny": TINY_DENSE},
))
