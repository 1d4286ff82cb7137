"""Building blocks several families share: dense encoders and decoders for any image
shape, the autoencoder assembly, size checks, and the map sizes of stride-2 networks.

Images are (B, H, W, C); dense blocks flatten them to H·W·C features and reshape back.
"""

from __future__ import annotations

import math

import keras

from hml_vae.families.bundle import AutoencoderModels


def pixel_count(image_shape) -> int:
    """H·W·C: the inputs of a dense encoder."""
    return math.prod(image_shape)


def require_image_shape(config) -> tuple[int, int, int]:
    """``config.image_shape``, or ValueError saying how to set it."""
    if config.image_shape is None:
        raise ValueError(
            f"{config.model}: the config has no image_shape; training sets it from the data "
            f"set, or pass image_shape=(H, W, C) to make_config when building models alone."
        )
    return tuple(config.image_shape)


# --- Checks (ValueErrors that say what to pass instead) --------------------------------------


def check_positive_sizes(sizes, what: str = "layer sizes") -> None:
    """Raises ValueError unless every size is a positive int (bools are not sizes)."""
    sizes = list(sizes)
    if not sizes or any(
        isinstance(size, bool) or not isinstance(size, int) or size <= 0 for size in sizes
    ):
        raise ValueError(f"{what} must be positive integers, got {sizes}; e.g. 100,30.")


def check_undercomplete(model: str, sizes, inputs: int | None) -> None:
    """Raises ValueError unless ``sizes`` narrow at every layer from ``inputs`` features
    (None: the image shape is not known yet, so only the sizes themselves are checked)."""
    check_positive_sizes(sizes)
    example = (f"from {inputs}, e.g. --hidden {max(2, inputs // 4)} --latent-dim "
               f"{max(1, inputs // 16)}" if inputs else "at every layer, e.g. --hidden 100 "
               "--latent-dim 30")
    previous = inputs
    for size in sizes:
        if previous is not None and size > previous:
            raise ValueError(
                f"{model}: a layer of {size} units after {previous} inputs; an undercomplete "
                f"autoencoder narrows at every layer. Use sizes that decrease {example}."
            )
        previous = size


def check_coding_smaller(model: str, latent_dim: int, image_shape) -> None:
    """Raises ValueError when a coding of ``latent_dim`` units is no smaller than an image."""
    check_positive_sizes([latent_dim], "the coding size (latent_dim)")
    if image_shape is not None and latent_dim >= pixel_count(image_shape):
        pixels = pixel_count(image_shape)
        raise ValueError(
            f"{model}: a coding of {latent_dim} units is not smaller than the {pixels} pixel "
            f"values it encodes; pass --latent-dim below {pixels}, e.g. 30."
        )


# --- Dense blocks ----------------------------------------------------------------------------


def dense_layers(sizes, activation: str, prefix: str, **kwargs) -> list[keras.layers.Dense]:
    """``Dense`` layers named ``{prefix}_0``, ``{prefix}_1``, ... of the given sizes."""
    return [
        keras.layers.Dense(size, activation=activation, name=f"{prefix}_{index}", **kwargs)
        for index, size in enumerate(sizes)
    ]


def apply(layers, x):
    """Calls ``layers`` in order on ``x``."""
    for layer in layers:
        x = layer(x)
    return x


def dense_encoder(image_shape, hidden, latent_dim: int, activation: str, input_layers=(),
                  coding_layer: keras.layers.Layer | None = None) -> keras.Model:
    """(B, H, W, C) -> flatten -> ``input_layers`` -> hidden layers -> coding.

    Args:
        input_layers: applied to the flat image first (the noise of a denoising model).
        coding_layer: the coding layer; default ``Dense(latent_dim, activation)``.
    """
    images = keras.Input(shape=image_shape, name="images")
    x = keras.layers.Flatten(name="flatten")(images)  # (B, H, W, C) -> (B, H·W·C)
    x = apply(input_layers, x)
    x = apply(dense_layers(hidden, activation, "encoder_dense"), x)
    if coding_layer is None:
        coding_layer = keras.layers.Dense(latent_dim, activation=activation, name="coding")
    return keras.Model(images, coding_layer(x), name="encoder")


def dense_decoder(image_shape, hidden, latent_dim: int, activation: str,
                  codings_name: str = "codings") -> keras.Model:
    """Codings -> mirrored hidden layers -> H·W·C linear outputs -> (B, H, W, C).

    The output layer is linear: HOML trains its autoencoders with MSE (reconstructions
    are not clipped to [0, 1]), and a VAE's decoder outputs logits or means.
    """
    codings = keras.Input(shape=(latent_dim,), name=codings_name)
    x = apply(dense_layers(tuple(reversed(hidden)), activation, "decoder_dense"), codings)
    x = keras.layers.Dense(pixel_count(image_shape), name="decoder_output")(x)
    reconstruction = keras.layers.Reshape(tuple(image_shape), name="reconstruction")(x)
    return keras.Model(codings, reconstruction, name="decoder")


def assemble(encoder: keras.Model, decoder: keras.Model, name: str = "autoencoder"):
    """The trainable whole: images -> encoder -> decoder -> reconstructions."""
    images = keras.Input(shape=encoder.input_shape[1:], name="images")
    reconstruction = decoder(encoder(images))
    return AutoencoderModels(encoder, decoder, keras.Model(images, reconstruction, name=name))


# --- Stride-2 networks -----------------------------------------------------------------------


def halved_sizes(size: int, steps: int, rounding=math.floor) -> list[int]:
    """Map sizes after each of ``steps`` halvings: 28, 3 steps, floor -> [28, 14, 7, 3]."""
    sizes = [size]
    for _ in range(steps):
        sizes.append(int(rounding(sizes[-1] / 2)))
    return sizes


def upsample(x, filters: int, size: tuple[int, int], target: tuple[int, int], name: str,
             activation=None):
    """A 3x3 stride-2 ``Conv2DTranspose`` from a ``size`` map to a ``target`` map.

    "same" padding doubles a side (7 -> 14), "valid" gives 2·side + 1 (3 -> 7). When one
    of them gives the target exactly, that is all; otherwise (a side that was odd before
    a halving, or a non-square image whose sides round differently) the padding that
    overshoots by at most one is used and the extra row or column is cropped at the
    bottom/right.
    """
    choices = [(padding, tuple(2 * s + grow - t for s, t in zip(size, target, strict=True)))
               for padding, grow in (("same", 0), ("valid", 1))]
    fitting = [(padding, crop) for padding, crop in choices if all(c in (0, 1) for c in crop)]
    if not fitting:
        raise ValueError(f"cannot upsample a {size} map to {target}.")
    padding, crop = fitting[0]
    x = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding=padding,
                                     activation=activation, name=name)(x)
    if any(crop):
        x = keras.layers.Cropping2D(((0, crop[0]), (0, crop[1])), name=f"{name}_crop")(x)
    return x


def format_sizes(heights, widths) -> str:
    """[28, 14], [20, 10] -> '28×20 → 14×10'."""
    return " → ".join(f"{h}×{w}" for h, w in zip(heights, widths, strict=True))
