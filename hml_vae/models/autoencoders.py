"""HOML ch. 17 autoencoders as named Keras Functional models: ``encoder``, ``decoder``,
``autoencoder``.

Example:
    >>> models = build_stacked(hidden=(100,), latent_dim=30)
    >>> models.autoencoder(images).shape  # images: (batch, 28, 28) in [0, 1]
    TensorShape([batch, 28, 28])
"""

from __future__ import annotations

import dataclasses

import keras

IMAGE_SHAPE = (28, 28)
PIXELS = 28 * 28


@dataclasses.dataclass(frozen=True)
class AutoencoderModels:
    """The three named models of an autoencoder; they share their layers."""

    encoder: keras.Model
    decoder: keras.Model
    autoencoder: keras.Model

    def encode(self, images):
        return self.encoder.predict(images, verbose=0)

    def decode(self, codings):
        return self.decoder.predict(codings, verbose=0)

    def reconstruct(self, images):
        return self.autoencoder.predict(images, verbose=0)


def check_sizes(hidden: tuple[int, ...], latent_dim: int) -> None:
    """Raises ValueError for sizes that no undercomplete dense autoencoder can have."""
    sizes = (*hidden, latent_dim)
    if any(not isinstance(size, int) or size <= 0 for size in sizes):
        raise ValueError(f"layer sizes must be positive integers, got {list(sizes)}.")
    inputs = PIXELS
    for size in sizes:
        if size > inputs:
            raise ValueError(
                f"layer of {size} units after {inputs} inputs: an undercomplete autoencoder "
                f"narrows at every layer. Use sizes that decrease from {PIXELS}, e.g. 100,30."
            )
        inputs = size


def assemble(encoder: keras.Model, decoder: keras.Model, name: str = "autoencoder"):
    """The trainable whole: images -> encoder -> decoder -> reconstructions."""
    images = keras.Input(shape=encoder.input_shape[1:], name="images")
    reconstruction = decoder(encoder(images))
    return AutoencoderModels(encoder, decoder, keras.Model(images, reconstruction, name=name))


def build_stacked(hidden: tuple[int, ...] = (100,), latent_dim: int = 30,
                  activation: str = "relu") -> AutoencoderModels:
    """HOML's stacked autoencoder: 784 -> hidden... -> latent_dim and the mirror image back.

    The output layer is linear (HOML 3rd ed. trains it with MSE); reconstructions are not
    clipped to [0, 1].
    """
    check_sizes(tuple(hidden), latent_dim)
    images = keras.Input(shape=IMAGE_SHAPE, name="images")
    x = keras.layers.Flatten(name="flatten")(images)  # (B, 28, 28) -> (B, 784)
    for index, size in enumerate(hidden):
        x = keras.layers.Dense(size, activation=activation, name=f"encoder_dense_{index}")(x)
    coding = keras.layers.Dense(latent_dim, activation=activation, name="coding")(x)
    encoder = keras.Model(images, coding, name="encoder")

    codings = keras.Input(shape=(latent_dim,), name="codings")
    x = codings
    for index, size in enumerate(reversed(hidden)):
        x = keras.layers.Dense(size, activation=activation, name=f"decoder_dense_{index}")(x)
    x = keras.layers.Dense(PIXELS, name="decoder_output")(x)
    reconstruction = keras.layers.Reshape(IMAGE_SHAPE, name="reconstruction")(x)
    decoder = keras.Model(codings, reconstruction, name="decoder")
    return assemble(encoder, decoder)
