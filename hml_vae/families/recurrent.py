"""Recurrent autoencoder (HOML ch. 17): each image is a sequence of its H rows, each row
W·C features; LSTMs encode the sequence and decode it back."""

from __future__ import annotations

import keras

from hml_vae.families import blocks
from hml_vae.families.bundle import AutoencoderModels
from hml_vae.families.family import Family, register

# The LSTMs loop over the rows by default: unrolled, an epoch is no faster on a CPU, and
# under XLA it compiles for minutes (benchmarks/results/recurrent_levers.md).
UNROLL = False


def build_recurrent(image_shape, hidden=(100,), latent_dim: int = 30,
                    unroll: bool = UNROLL) -> AutoencoderModels:
    """HOML's recurrent autoencoder.

    Encoder: ``LSTM`` layers of ``hidden`` units over the rows, then an ``LSTM`` of
    ``latent_dim`` units whose last output is the coding. Decoder: ``RepeatVector(H)``,
    ``LSTM`` layers of the mirrored sizes, and a time-distributed linear ``Dense(W·C)``.

    Args:
        unroll: each LSTM unrolls its H steps into the graph instead of looping over them
            (the same math; a longer compile, no loop at run time).

    Returns:
        AutoencoderModels taking and returning (B, H, W, C) images.
    """
    hidden = tuple(hidden)
    blocks.check_positive_sizes((*hidden, latent_dim))
    blocks.check_coding_smaller("recurrent", latent_dim, image_shape)
    rows, columns, channels = image_shape
    images = keras.Input(shape=image_shape, name="images")
    x = keras.layers.Reshape((rows, columns * channels), name="rows")(images)  # (B, H, W·C)
    for index, units in enumerate(hidden):
        x = keras.layers.LSTM(units, return_sequences=True, unroll=unroll,
                              name=f"encoder_lstm_{index}")(x)
    coding = keras.layers.LSTM(latent_dim, unroll=unroll, name="coding")(x)  # (B, latent_dim)
    encoder = keras.Model(images, coding, name="encoder")

    codings = keras.Input(shape=(latent_dim,), name="codings")
    x = keras.layers.RepeatVector(rows, name="repeat_rows")(codings)  # (B, H, latent_dim)
    for index, units in enumerate(reversed(hidden)):
        x = keras.layers.LSTM(units, return_sequences=True, unroll=unroll,
                              name=f"decoder_lstm_{index}")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(columns * channels),
                                     name="row_output")(x)  # (B, H, units) -> (B, H, W·C)
    reconstruction = keras.layers.Reshape(tuple(image_shape), name="reconstruction")(x)
    decoder = keras.Model(codings, reconstruction, name="decoder")
    return blocks.assemble(encoder, decoder)


def check(config) -> None:
    blocks.check_positive_sizes((*config.hidden, config.latent_dim))
    blocks.check_coding_smaller("recurrent", config.latent_dim, config.image_shape)


def describe(config) -> str:
    rows, columns, channels = config.image_shape
    return (f"LSTM over {rows} rows of {columns * channels} values (W·C), units "
            f"{'-'.join(map(str, (*config.hidden, config.latent_dim)))}")


FAMILY = register(Family(
    name="recurrent",
    summary="LSTM(100)→LSTM(30) over the image rows, RepeatVector, LSTM(100), a dense layer "
            "per row",
    build=lambda config: build_recurrent(blocks.require_image_shape(config), config.hidden,
                                         config.latent_dim),
    # HOML 3rd ed. ch. 17's notebook ("Extra Material – Recurrent Autoencoders"):
    # LSTM(100) -> LSTM(30) over the 28 rows; RepeatVector(28) -> LSTM(100) -> Dense(28) on
    # every row; MSE, Nadam, 10 epochs, batch 32.
    presets={
        "default": {"hidden": (100,), "latent_dim": 30, "epochs": 10, "batch_size": 32,
                    "optimizer": "nadam", "learning_rate": 1e-3},
        "tiny": {"hidden": (8,), "latent_dim": 4, "epochs": 1, "batch_size": 64},
    },
    bundle_type=AutoencoderModels,
    xla=True,  # faster epochs for a longer compile: benchmarks/results/recurrent_levers.md
    check=check,
    describe=describe,
))
