"""Convolutional autoencoder (HOML ch. 17) for images of any size.

Encoder: per entry of ``hidden`` a 3x3 ``Conv2D`` and a 2x2 max pooling (each halves the
map, rounding down: 28 -> 14 -> 7 -> 3), then a 3x3 ``Conv2D`` with ``latent_dim`` filters
and global average pooling to the coding. Decoder: ``Dense`` to the smallest map, then
stride-2 ``Conv2DTranspose`` layers back up through the same sizes (so no padding of the
input is needed: a side that was odd before a pooling is restored by "valid" padding, a
side of a non-square image that rounds differently is cropped by one).
"""

from __future__ import annotations

import math

import keras

from hml_vae.families import blocks
from hml_vae.families.bundle import AutoencoderModels
from hml_vae.families.family import Family, register


def map_sizes(image_shape, blocks_count: int) -> tuple[list[int], list[int]]:
    """Heights and widths of the feature maps after each pooling."""
    height, width = image_shape[:2]
    return blocks.halved_sizes(height, blocks_count), blocks.halved_sizes(width, blocks_count)


def check_fits(model: str, image_shape, blocks_count: int, rounding=math.floor) -> None:
    """Raises ValueError unless every one of ``blocks_count`` halvings (rounding down or
    up) starts from a map of at least 2×2."""
    def fits(count: int) -> bool:
        sides = [*blocks.halved_sizes(image_shape[0], count, rounding)[:-1],
                 *blocks.halved_sizes(image_shape[1], count, rounding)[:-1]]
        return min(sides, default=2) >= 2

    if not fits(blocks_count):
        most = max(count for count in range(blocks_count) if fits(count))
        raise ValueError(
            f"{model}: images of {image_shape[0]}×{image_shape[1]} pixels are too small for "
            f"{blocks_count} stride-2 blocks (--hidden has one filter count per block); they "
            f"allow at most {most}. Pass fewer --hidden entries or larger --image-size."
        )


def build_conv(image_shape, filters=(16, 32, 64), latent_dim: int = 30,
               activation: str = "relu") -> AutoencoderModels:
    """HOML's convolutional autoencoder.

    Args:
        image_shape: (H, W, C), H and W at least 2^len(filters).
        filters: filters of the encoder's convolutions, one per conv+pooling block.
        latent_dim: size of the coding, smaller than H·W·C.
        activation: of every layer but the linear output.

    Returns:
        AutoencoderModels taking and returning (B, H, W, C) images.
    """
    filters = tuple(filters)
    blocks.check_positive_sizes(filters, "conv filters")
    blocks.check_coding_smaller("conv", latent_dim, image_shape)
    check_fits("conv", image_shape, len(filters))
    heights, widths = map_sizes(image_shape, len(filters))
    images = keras.Input(shape=image_shape, name="images")
    x = images
    for index, count in enumerate(filters):
        x = keras.layers.Conv2D(count, 3, padding="same", activation=activation,
                                name=f"encoder_conv_{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"encoder_pool_{index}")(x)
    x = keras.layers.Conv2D(latent_dim, 3, padding="same", activation=activation,
                            name="coding_conv")(x)
    coding = keras.layers.GlobalAveragePooling2D(name="coding")(x)  # (B, h, w, L) -> (B, L)
    encoder = keras.Model(images, coding, name="encoder")

    codings = keras.Input(shape=(latent_dim,), name="codings")
    size = (heights[-1], widths[-1])
    x = keras.layers.Dense(size[0] * size[1] * filters[0], name="decoder_dense")(codings)
    x = keras.layers.Reshape((*size, filters[0]), name="decoder_map")(x)
    # HOML's decoder runs its channels back down (32, 16) and ends with the image's
    # channels, linear.
    channels = (*reversed(filters[:-1]), image_shape[-1])
    for index, count in enumerate(channels):
        target = (heights[-2 - index], widths[-2 - index])
        last = index == len(channels) - 1
        x = blocks.upsample(x, count, size, target, name=f"decoder_conv_transpose_{index}",
                            activation=None if last else activation)
        size = target
    decoder = keras.Model(codings, x, name="decoder")
    return blocks.assemble(encoder, decoder)


def check(config) -> None:
    blocks.check_positive_sizes(config.hidden, "conv filters")
    blocks.check_coding_smaller("conv", config.latent_dim, config.image_shape)
    if config.image_shape is not None:
        check_fits("conv", config.image_shape, len(config.hidden))


def describe(config) -> str:
    heights, widths = map_sizes(config.image_shape, len(config.hidden))
    return (f"conv maps {blocks.format_sizes(heights, widths)} (2×2 max pooling, rounding "
            f"down), coding {config.latent_dim}; the decoder upsamples through the same sizes")


FAMILY = register(Family(
    name="conv",
    summary="Conv2D 16/32/64 + 2×2 pooling, a 30-unit coding, transposed convolutions back",
    build=lambda config: build_conv(blocks.require_image_shape(config), config.hidden,
                                    config.latent_dim),
    # HOML 3rd ed. ch. 17's notebook ("Convolutional Autoencoders"): Conv2D 16, 32, 64
    # (3x3, "same", ReLU) each with 2x2 max pooling down to 3x3x64, a Conv2D of 30 filters
    # + global average pooling as the 30-unit coding; Dense(3·3·16), then
    # Conv2DTranspose 32, 16, 1 (stride 2) back to 28x28; MSE, Nadam, 10 epochs, batch 32.
    presets={
        "default": {"hidden": (16, 32, 64), "latent_dim": 30, "epochs": 10, "batch_size": 32,
                    "optimizer": "nadam", "learning_rate": 1e-3},
        "tiny": {"hidden": (4, 8, 8), "latent_dim": 8, "epochs": 1, "batch_size": 64},
    },
    bundle_type=AutoencoderModels,
    bfloat16=True,
    check=check,
    describe=describe,
))
