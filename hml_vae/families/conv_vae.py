"""Convolutional VAE for images of any size: stride-2 convolutions (each halves the map,
rounding up: 28 -> 14 -> 7) and their transposes back, with the dense VAE's heads,
sampling and likelihoods (:mod:`hml_vae.families.vae`)."""

from __future__ import annotations

import math

import keras

from hml_vae.families import blocks
from hml_vae.families.conv import check_fits
from hml_vae.families.family import register
from hml_vae.families.vae import assemble, likelihood_arguments, posterior_heads, vae_family
from hml_vae.families.vae import check as check_vae
from hml_vae.layers import check_likelihood


def map_sizes(image_shape, blocks_count: int) -> tuple[list[int], list[int]]:
    height, width = image_shape[:2]
    return (blocks.halved_sizes(height, blocks_count, math.ceil),
            blocks.halved_sizes(width, blocks_count, math.ceil))


def build_conv_vae(image_shape, filters=(32, 64), latent_dim: int = 10,
                   likelihood: str = "bernoulli", gaussian_sigma: float = 1.0,
                   learned_sigma: str = "none", beta: float = 1.0, free_bits: float = 0.0,
                   seed=None, activation: str = "relu"):
    """Convolutional VAE.

    Args:
        image_shape: (H, W, C).
        filters: channels of the encoder's stride-2 convolutions (``config.hidden``), e.g.
            (32, 64): 28 -> 14 -> 7.
        Other arguments as :func:`hml_vae.families.vae.build_dense_vae`.

    Returns:
        :class:`~hml_vae.families.bundle.VAEModels`.
    """
    filters = tuple(filters)
    blocks.check_positive_sizes((*filters, latent_dim))
    check_likelihood(likelihood, gaussian_sigma, learned_sigma)
    check_fits("conv_vae", image_shape, len(filters), math.ceil)
    heights, widths = map_sizes(image_shape, len(filters))
    images = keras.Input(shape=image_shape, name="images")
    x = images
    for index, count in enumerate(filters):
        x = keras.layers.Conv2D(count, 3, strides=2, padding="same", activation=activation,
                                name=f"encoder_conv_{index}")(x)  # halves height and width
    x = keras.layers.Flatten(name="flatten")(x)  # (B, h, w, filters[-1]) -> (B, h·w·filters)
    encoder = keras.Model(images, posterior_heads(x, latent_dim, beta, free_bits, seed),
                          name="encoder")

    codings = keras.Input(shape=(latent_dim,), name="z")
    size = (heights[-1], widths[-1])
    x = keras.layers.Dense(size[0] * size[1] * filters[-1], activation=activation,
                           name="decoder_dense")(codings)
    x = keras.layers.Reshape((*size, filters[-1]), name="decoder_reshape")(x)
    channels = (*reversed(filters[:-1]), image_shape[-1])
    for index, count in enumerate(channels):
        target = (heights[-2 - index], widths[-2 - index])
        last = index == len(channels) - 1
        # The last layer is linear: logits or means.
        x = blocks.upsample(x, count, size, target,
                            name="decoder_output" if last else f"decoder_deconv_{index}",
                            activation=None if last else activation)
        size = target
    decoder = keras.Model(codings, x, name="decoder")
    return assemble(encoder, decoder, likelihood, gaussian_sigma, learned_sigma)


def check(config) -> None:
    check_vae(config)
    if config.image_shape is not None:
        check_fits("conv_vae", config.image_shape, len(config.hidden), math.ceil)


def describe(config) -> str:
    heights, widths = map_sizes(config.image_shape, len(config.hidden))
    return (f"conv VAE maps {blocks.format_sizes(heights, widths)} (stride 2, rounding up; "
            f"the decoder crops odd sides), {config.latent_dim}-D latent, "
            f"{config.likelihood} decoder")


FAMILY = register(vae_family(
    name="conv_vae",
    summary="convolutional VAE (28→14→7 with 32, 64 filters)",
    build=lambda config: build_conv_vae(blocks.require_image_shape(config), config.hidden,
                                        config.latent_dim, **likelihood_arguments(config)),
    presets={
        "default": {"hidden": (32, 64), "latent_dim": 10, "epochs": 25, "batch_size": 128},
        "tiny": {"hidden": (4, 8), "latent_dim": 4, "epochs": 1, "batch_size": 64,
                 "iwae_samples": 8},
    },
    # Not XLA: measured 0.5-1.0x on CPU (benchmarks/results/xla_by_family.md).
    check=check,
    describe=describe,
))
