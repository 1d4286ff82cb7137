"""HOML ch. 17 autoencoders as named Keras Functional models: ``encoder``, ``decoder``,
``autoencoder``.

Families: stacked, tied (weights shared by encoder and decoder), conv, recurrent, denoising
and sparse. Every autoencoder takes images of shape (batch, 28, 28) in [0, 1] and returns
reconstructions of the same shape; families that need another shape reshape inside the
model, so one data pipeline serves them all.

Example:
    >>> models = build_stacked(hidden=(100,), latent_dim=30)
    >>> models.autoencoder(images).shape  # images: (batch, 28, 28) in [0, 1]
    TensorShape([batch, 28, 28])
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from hml_vae.layers import DenseTranspose, KLDivergenceRegularizer

IMAGE_SHAPE = (28, 28)
PIXELS = 28 * 28
NOISE_KINDS = ("gaussian", "dropout")
SPARSITY_KINDS = ("kl", "l1")
# Feature-map sizes after each 2x2 max pooling of a 28x28 image (floor division). Below
# 3x3 a 3x3 kernel sees mostly padding, so the conv family has at most three poolings.
CONV_MAP_SIZES = (28, 14, 7, 3)


@dataclasses.dataclass(frozen=True)
class AutoencoderModels:
    """The three named models of an autoencoder; they share their layers."""

    encoder: keras.Model
    decoder: keras.Model
    autoencoder: keras.Model

    @property
    def whole(self) -> keras.Model:
        """The trainable whole (``fit`` and ``model.keras``)."""
        return self.autoencoder

    def encode(self, images):
        return self.encoder.predict(images, verbose=0)

    def coding(self, images) -> np.ndarray:
        """The deterministic coding (N, coding size): the encoder's output."""
        return np.asarray(self.encode(images)).reshape(len(images), -1)

    def decode(self, codings):
        return self.decoder.predict(codings, verbose=0)

    def reconstruct(self, images):
        return self.autoencoder.predict(images, verbose=0)


# --- Validation (ValueErrors that say what to pass instead) ---------------------------------


def check_positive_sizes(sizes, what: str = "layer sizes") -> None:
    """Raises ValueError unless every size is a positive int (bools are not sizes)."""
    sizes = list(sizes)
    if not sizes or any(
        isinstance(size, bool) or not isinstance(size, int) or size <= 0 for size in sizes
    ):
        raise ValueError(f"{what} must be positive integers, got {sizes}; e.g. 100,30.")


def check_sizes(hidden: tuple[int, ...], latent_dim: int) -> None:
    """Raises ValueError for sizes that no undercomplete dense autoencoder can have."""
    sizes = (*hidden, latent_dim)
    check_positive_sizes(sizes)
    inputs = PIXELS
    for size in sizes:
        if size > inputs:
            raise ValueError(
                f"layer of {size} units after {inputs} inputs: an undercomplete autoencoder "
                f"narrows at every layer. Use sizes that decrease from {PIXELS}, e.g. 100,30."
            )
        inputs = size


def check_coding_smaller_than_image(latent_dim: int) -> None:
    """Raises ValueError when a coding of ``latent_dim`` units is no smaller than an image."""
    check_positive_sizes([latent_dim], "the coding size (latent_dim)")
    if latent_dim >= PIXELS:
        raise ValueError(
            f"a coding of {latent_dim} units is not smaller than the {PIXELS} pixels it "
            f"encodes; an undercomplete autoencoder needs latent_dim < {PIXELS}, e.g. 30."
        )


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(choices)}.")


# --- Building blocks ------------------------------------------------------------------------


def assemble(encoder: keras.Model, decoder: keras.Model, name: str = "autoencoder"):
    """The trainable whole: images -> encoder -> decoder -> reconstructions."""
    images = keras.Input(shape=encoder.input_shape[1:], name="images")
    reconstruction = decoder(encoder(images))
    return AutoencoderModels(encoder, decoder, keras.Model(images, reconstruction, name=name))


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


def dense_decoder(hidden, latent_dim: int, activation: str) -> keras.Model:
    """Codings -> mirrored hidden layers -> 784 linear outputs -> (B, 28, 28).

    The output layer is linear because HOML 3rd ed. trains these models with MSE;
    reconstructions are not clipped to [0, 1].
    """
    codings = keras.Input(shape=(latent_dim,), name="codings")
    x = apply(dense_layers(tuple(reversed(hidden)), activation, "decoder_dense"), codings)
    x = keras.layers.Dense(PIXELS, name="decoder_output")(x)
    reconstruction = keras.layers.Reshape(IMAGE_SHAPE, name="reconstruction")(x)
    return keras.Model(codings, reconstruction, name="decoder")


def dense_encoder(hidden, latent_dim: int, activation: str, input_layers=(),
                  coding_layer: keras.layers.Layer | None = None) -> keras.Model:
    """(B, 28, 28) -> flatten -> ``input_layers`` -> hidden layers -> coding.

    Args:
        input_layers: applied to the flat image first (the noise of a denoising model).
        coding_layer: the coding layer; default ``Dense(latent_dim, activation)``.
    """
    images = keras.Input(shape=IMAGE_SHAPE, name="images")
    x = keras.layers.Flatten(name="flatten")(images)  # (B, 28, 28) -> (B, 784)
    x = apply(input_layers, x)
    x = apply(dense_layers(hidden, activation, "encoder_dense"), x)
    if coding_layer is None:
        coding_layer = keras.layers.Dense(latent_dim, activation=activation, name="coding")
    return keras.Model(images, coding_layer(x), name="encoder")


# --- Families -------------------------------------------------------------------------------


def build_stacked(hidden: tuple[int, ...] = (100,), latent_dim: int = 30,
                  activation: str = "relu") -> AutoencoderModels:
    """HOML's stacked autoencoder: 784 -> hidden... -> latent_dim and the mirror image back.

    Args:
        hidden: encoder hidden sizes; the decoder mirrors them.
        latent_dim: size of the coding.
        activation: of every hidden and coding layer (the output layer is linear).

    Returns:
        AutoencoderModels with ``encoder`` (B, 28, 28) -> (B, latent_dim), ``decoder`` back.
    """
    check_sizes(tuple(hidden), latent_dim)
    encoder = dense_encoder(hidden, latent_dim, activation)
    return assemble(encoder, dense_decoder(hidden, latent_dim, activation))


def build_tied(hidden: tuple[int, ...] = (100,), latent_dim: int = 30,
               activation: str = "relu") -> AutoencoderModels:
    """HOML's tied-weights autoencoder: the stacked one whose decoder layers are
    :class:`DenseTranspose` layers of the encoder's, so it has about half the weights.

    The autoencoder is one flat Functional graph over the encoder's and decoder's layers
    (not encoder and decoder nested as sub-models): Keras can only keep a layer shared
    between two places of a saved model when both sit in the same graph's config, and the
    tie must survive ``.keras`` save and load.

    Args and Returns: as :func:`build_stacked`.
    """
    check_sizes(tuple(hidden), latent_dim)
    images = keras.Input(shape=IMAGE_SHAPE, name="images")
    encoder_layers = [
        *dense_layers(hidden, activation, "encoder_dense"),
        keras.layers.Dense(latent_dim, activation=activation, name="coding"),
    ]
    coding = apply(encoder_layers, keras.layers.Flatten(name="flatten")(images))
    encoder = keras.Model(images, coding, name="encoder")

    # The mirror image: decoder layer i is tied to encoder layer (last - i). The final
    # layer, tied to the first encoder layer, restores the 784 pixels and is linear, as in
    # the stacked model.
    decoder_layers = [
        DenseTranspose(dense, activation=activation if dense is not encoder_layers[0] else None,
                       name=f"decoder_transpose_{index}")
        for index, dense in enumerate(reversed(encoder_layers))
    ]
    decoder_layers.append(keras.layers.Reshape(IMAGE_SHAPE, name="reconstruction"))
    codings = keras.Input(shape=(latent_dim,), name="codings")
    decoder = keras.Model(codings, apply(decoder_layers, codings), name="decoder")
    autoencoder = keras.Model(images, apply(decoder_layers, coding), name="autoencoder")
    return AutoencoderModels(encoder, decoder, autoencoder)


def conv_upsampling(size: int, target: int) -> dict:
    """Padding of a stride-2, 3x3 ``Conv2DTranspose`` that maps ``size`` to ``target``:
    "same" doubles (7 -> 14); "valid" gives 2 * size + 1 (3 -> 7)."""
    return {"padding": "same" if target == 2 * size else "valid"}


def build_conv(filters: tuple[int, ...] = (16, 32, 64), latent_dim: int = 30,
               activation: str = "relu") -> AutoencoderModels:
    """HOML's convolutional autoencoder.

    Encoder: per entry of ``filters`` a 3x3 ``Conv2D`` and a 2x2 max pooling (28 -> 14 ->
    7 -> 3), then a 3x3 ``Conv2D`` with ``latent_dim`` filters and global average pooling
    to the coding. Decoder: ``Dense`` to a 3x3 (or 7x7, 14x14) map with ``filters[0]``
    channels, stride-2 ``Conv2DTranspose`` layers back up to 28x28x1.

    Args:
        filters: filters of the encoder's convolutions, one to three entries.
        latent_dim: size of the coding, smaller than 784.
        activation: of every layer but the linear output.

    Returns:
        AutoencoderModels taking and returning (B, 28, 28) images.
    """
    check_positive_sizes(filters, "conv filters")
    if len(filters) >= len(CONV_MAP_SIZES):
        raise ValueError(
            f"conv filters {list(filters)}: at most {len(CONV_MAP_SIZES) - 1} conv+pooling "
            f"blocks fit a 28x28 image (28 -> 14 -> 7 -> 3); pass e.g. 16,32,64."
        )
    check_coding_smaller_than_image(latent_dim)
    blocks = len(filters)
    images = keras.Input(shape=IMAGE_SHAPE, name="images")
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="add_channel")(images)
    for index, count in enumerate(filters):
        x = keras.layers.Conv2D(count, 3, padding="same", activation=activation,
                                name=f"encoder_conv_{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"encoder_pool_{index}")(x)
    x = keras.layers.Conv2D(latent_dim, 3, padding="same", activation=activation,
                            name="coding_conv")(x)
    coding = keras.layers.GlobalAveragePooling2D(name="coding")(x)  # (B, s, s, L) -> (B, L)
    encoder = keras.Model(images, coding, name="encoder")

    size = CONV_MAP_SIZES[blocks]
    codings = keras.Input(shape=(latent_dim,), name="codings")
    x = keras.layers.Dense(size * size * filters[0], name="decoder_dense")(codings)
    x = keras.layers.Reshape((size, size, filters[0]), name="decoder_map")(x)
    # HOML's decoder runs its channels back down (32, 16) and ends with one linear channel.
    channels = (*reversed(filters[:-1]), 1)
    for index, count in enumerate(channels):
        target = CONV_MAP_SIZES[blocks - 1 - index]
        last = index == len(channels) - 1
        x = keras.layers.Conv2DTranspose(
            count, 3, strides=2, activation=None if last else activation,
            name=f"decoder_conv_transpose_{index}", **conv_upsampling(size, target),
        )(x)
        size = target
    reconstruction = keras.layers.Reshape(IMAGE_SHAPE, name="reconstruction")(x)
    decoder = keras.Model(codings, reconstruction, name="decoder")
    return assemble(encoder, decoder)


def build_recurrent(hidden: tuple[int, ...] = (100,), latent_dim: int = 30) -> AutoencoderModels:
    """HOML's recurrent autoencoder: each image is a sequence of 28 rows of 28 pixels.

    Encoder: ``LSTM`` layers of ``hidden`` units over the rows, then an ``LSTM`` of
    ``latent_dim`` units whose last output is the coding. Decoder: ``RepeatVector(28)``,
    ``LSTM`` layers of the mirrored sizes, and a time-distributed linear ``Dense(28)``.

    Args:
        hidden: LSTM sizes of the encoder; the decoder mirrors them.
        latent_dim: size of the coding, smaller than 784.

    Returns:
        AutoencoderModels taking and returning (B, 28, 28) images.
    """
    check_positive_sizes((*hidden, latent_dim))
    check_coding_smaller_than_image(latent_dim)
    rows, columns = IMAGE_SHAPE
    images = keras.Input(shape=IMAGE_SHAPE, name="images")
    x = images  # (B, 28 rows, 28 pixels)
    for index, units in enumerate(hidden):
        x = keras.layers.LSTM(units, return_sequences=True, name=f"encoder_lstm_{index}")(x)
    coding = keras.layers.LSTM(latent_dim, name="coding")(x)  # (B, latent_dim)
    encoder = keras.Model(images, coding, name="encoder")

    codings = keras.Input(shape=(latent_dim,), name="codings")
    x = keras.layers.RepeatVector(rows, name="repeat_rows")(codings)  # (B, 28, latent_dim)
    for index, units in enumerate(reversed(hidden)):
        x = keras.layers.LSTM(units, return_sequences=True, name=f"decoder_lstm_{index}")(x)
    reconstruction = keras.layers.TimeDistributed(
        keras.layers.Dense(columns), name="reconstruction"
    )(x)  # (B, 28, units) -> (B, 28, 28)
    decoder = keras.Model(codings, reconstruction, name="decoder")
    return assemble(encoder, decoder)


def make_noise_layer(noise: str, noise_stddev: float = 0.2, dropout_rate: float = 0.5,
                     seed: int | None = None) -> keras.layers.Layer:
    """The input corruption of a denoising autoencoder; Keras applies it only in training.

    Args:
        noise: ``gaussian`` adds N(0, noise_stddev^2) to every pixel; ``dropout`` zeroes
            each pixel with probability ``dropout_rate`` (and scales the rest by
            1 / (1 - dropout_rate), as ``keras.layers.Dropout`` does).
        seed: seeds the layer's own ``SeedGenerator``.
    """
    check_choice("noise", noise, NOISE_KINDS)
    if noise == "gaussian":
        if not noise_stddev > 0:
            raise ValueError(f"noise_stddev must be positive, got {noise_stddev!r}; e.g. 0.2.")
        return keras.layers.GaussianNoise(noise_stddev, seed=seed, name="noise")
    if not 0 < dropout_rate < 1:
        raise ValueError(f"dropout_rate must lie in (0, 1), got {dropout_rate!r}; e.g. 0.5.")
    return keras.layers.Dropout(dropout_rate, seed=seed, name="noise")


def build_denoising(hidden: tuple[int, ...] = (100,), latent_dim: int = 30,
                    noise: str = "dropout", noise_stddev: float = 0.2,
                    dropout_rate: float = 0.5, seed: int | None = None,
                    activation: str = "relu") -> AutoencoderModels:
    """HOML's denoising autoencoder: the stacked one with noise on its flattened inputs.

    The noise layer (named ``noise``) is active only when the model is called with
    ``training=True`` (``fit``); ``predict`` and evaluation see clean inputs.

    Args:
        hidden, latent_dim, activation: as :func:`build_stacked`.
        noise, noise_stddev, dropout_rate, seed: see :func:`make_noise_layer`.

    Returns:
        AutoencoderModels; the encoder holds the noise layer.
    """
    check_sizes(tuple(hidden), latent_dim)
    noise_layer = make_noise_layer(noise, noise_stddev, dropout_rate, seed)
    encoder = dense_encoder(hidden, latent_dim, activation, input_layers=[noise_layer])
    return assemble(encoder, dense_decoder(hidden, latent_dim, activation))


def make_sparsity_regularizer(sparsity: str, sparsity_target: float = 0.1,
                              sparsity_weight: float = 0.05) -> keras.regularizers.Regularizer:
    """The activity regularizer of a sparse coding layer.

    Args:
        sparsity: ``kl`` (:class:`~hml_vae.layers.KLDivergenceRegularizer`, pulls each
            unit's mean activation to ``sparsity_target``) or ``l1`` (``sparsity_weight``
            times the summed absolute activations; the target is not used).
    """
    check_choice("sparsity", sparsity, SPARSITY_KINDS)
    if sparsity == "kl":
        return KLDivergenceRegularizer(weight=sparsity_weight, target=sparsity_target)
    if not sparsity_weight > 0:
        raise ValueError(f"sparsity weight must be positive, got {sparsity_weight!r}.")
    return keras.regularizers.L1(sparsity_weight)


def build_sparse(hidden: tuple[int, ...] = (100,), latent_dim: int = 300,
                 sparsity: str = "kl", sparsity_target: float = 0.1,
                 sparsity_weight: float = 0.05, activation: str = "relu") -> AutoencoderModels:
    """HOML's sparse autoencoder: a wide sigmoid coding with an activity penalty.

    The coding may be wider than the hidden layer before it (HOML: 100 -> 300): the
    penalty, not the size, keeps it from copying its input.

    Args:
        hidden: encoder hidden sizes; the decoder mirrors them.
        latent_dim: number of sigmoid coding units.
        sparsity, sparsity_target, sparsity_weight: see :func:`make_sparsity_regularizer`.
        activation: of the hidden layers.

    Returns:
        AutoencoderModels; the encoder's output layer is named ``coding``.
    """
    check_positive_sizes((*hidden, latent_dim))
    coding_layer = keras.layers.Dense(
        latent_dim, activation="sigmoid", name="coding",
        activity_regularizer=make_sparsity_regularizer(sparsity, sparsity_target,
                                                       sparsity_weight),
    )
    encoder = dense_encoder(hidden, latent_dim, activation, coding_layer=coding_layer)
    return assemble(encoder, dense_decoder(hidden, latent_dim, activation))
