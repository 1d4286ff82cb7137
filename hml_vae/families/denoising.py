"""Denoising autoencoder (HOML ch. 17): the stacked one with noise on its flattened inputs,
active only in training (Dropout(0.5), or GaussianNoise(0.2) with ``--noise gaussian``).

Besides the common numbers it reports how well it cleans test images corrupted like in
training, against the noisy inputs' own error (what a useful denoiser must beat).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from hml_vae.families import blocks
from hml_vae.families.bundle import AutoencoderModels
from hml_vae.families.family import COMMON_FIGURES, register
from hml_vae.families.stacked import BOOK_STACKED, TINY_DENSE, dense_family, describe_dense
from hml_vae.layers import add_random_state, draw_random

NOISE_KINDS = ("dropout", "gaussian")


class OwnRandomState:
    """For a Keras noise layer: its draws come from a Philox state that is one of its
    weights (:func:`hml_vae.layers.add_random_state`), so they are cheap inside an
    XLA-compiled step and a run resumed from a checkpoint continues the same stream.
    The state is created in ``build``, before Keras locks the layer's variables."""

    def build(self, input_shape):
        self.rng_state = add_random_state(self, self.seed)

    def draw(self, distribution: str, shape, dtype):
        return draw_random(distribution, shape, dtype, self.rng_state, self.seed_generator)


@keras.saving.register_keras_serializable(package="hml_vae")
class StatefulDropout(OwnRandomState, keras.layers.Dropout):
    """``keras.layers.Dropout`` drawing its masks from its own saved random state.

    In training each value is zeroed with probability ``rate`` and the others are scaled
    by 1 / (1 - rate); at inference it is the identity. Same arguments as Keras' layer.

    Example:
        >>> noisy = StatefulDropout(0.5, seed=1)(images, training=True)
    """

    def call(self, inputs, training=False):
        if not (training and self.rate > 0):
            return inputs
        # Drawn in float32 whatever the compute dtype: the comparison with ``rate`` is exact.
        uniform = self.draw("uniform", self.mask_shape(inputs), "float32")
        kept = inputs * ops.cast(1.0 / (1.0 - self.rate), inputs.dtype)
        return ops.where(uniform >= self.rate, kept, ops.zeros_like(kept))

    def mask_shape(self, inputs):
        """``noise_shape`` with its None entries taken from ``inputs`` (default: the
        inputs' shape): a mask dimension of 1 drops whole slices."""
        shape = ops.shape(inputs)
        if self.noise_shape is None:
            return shape
        return tuple(shape[axis] if size is None else size
                     for axis, size in enumerate(self.noise_shape))


@keras.saving.register_keras_serializable(package="hml_vae")
class StatefulGaussianNoise(OwnRandomState, keras.layers.GaussianNoise):
    """``keras.layers.GaussianNoise`` drawing its noise from its own saved random state:
    adds N(0, stddev²) to every value in training; the identity at inference.

    Example:
        >>> noisy = StatefulGaussianNoise(0.2, seed=1)(images, training=True)
    """

    def call(self, inputs, training=False):
        if not (training and self.stddev > 0):
            return inputs
        return inputs + self.stddev * self.draw("normal", ops.shape(inputs), self.compute_dtype)


def make_noise_layer(noise: str, noise_stddev: float = 0.2, dropout_rate: float = 0.5,
                     seed: int | None = None) -> keras.layers.Layer:
    """The input corruption, applied only in training.

    Args:
        noise: ``gaussian`` adds N(0, noise_stddev^2) to every pixel; ``dropout`` zeroes
            each pixel with probability ``dropout_rate`` (and scales the rest by
            1 / (1 - dropout_rate), as ``keras.layers.Dropout`` does).
        seed: seeds the layer's own random state.
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; expected one of: {', '.join(NOISE_KINDS)}.")
    if noise == "gaussian":
        if not noise_stddev > 0:
            raise ValueError(f"noise_stddev must be positive, got {noise_stddev!r}; e.g. 0.2.")
        return StatefulGaussianNoise(noise_stddev, seed=seed, name="noise")
    if not 0 < dropout_rate < 1:
        raise ValueError(f"dropout_rate must lie in (0, 1), got {dropout_rate!r}; e.g. 0.5.")
    return StatefulDropout(dropout_rate, seed=seed, name="noise")


def build_denoising(image_shape, hidden=(100,), latent_dim: int = 30, noise: str = "dropout",
                    noise_stddev: float = 0.2, dropout_rate: float = 0.5,
                    seed: int | None = None, activation: str = "relu") -> AutoencoderModels:
    """HOML's denoising autoencoder; the encoder holds the noise layer (named ``noise``),
    active only when called with ``training=True`` (``fit``)."""
    hidden = tuple(hidden)
    blocks.check_undercomplete("denoising", (*hidden, latent_dim),
                               blocks.pixel_count(image_shape))
    noise_layer = make_noise_layer(noise, noise_stddev, dropout_rate, seed)
    encoder = blocks.dense_encoder(image_shape, hidden, latent_dim, activation,
                                   input_layers=[noise_layer])
    return blocks.assemble(encoder, blocks.dense_decoder(image_shape, hidden, latent_dim,
                                                         activation))


def corrupt_images(images: np.ndarray, noise: str, noise_stddev: float = 0.2,
                   dropout_rate: float = 0.5, seed: int = 0) -> np.ndarray:
    """The corruption the model trained with, drawn once with ``seed``: Gaussian noise, or
    dropout exactly as ``keras.layers.Dropout`` does it in training (kept pixels scaled by
    1 / (1 - rate), not clipped). Returns float32 shaped like ``images``."""
    rng = np.random.default_rng(seed)
    if noise == "gaussian":
        noisy = images + rng.normal(0.0, noise_stddev, size=images.shape)
    elif noise == "dropout":
        keep = rng.random(images.shape) >= dropout_rate
        noisy = np.where(keep, images / (1.0 - dropout_rate), 0.0)
    else:
        raise ValueError(f"unknown noise {noise!r}; expected gaussian or dropout.")
    return noisy.astype(np.float32)


def corrupt(config, images: np.ndarray) -> np.ndarray:
    return corrupt_images(images, config.noise, config.noise_stddev, config.dropout_rate,
                          seed=config.seed)


def denoising_metrics(config, models, images: np.ndarray) -> dict[str, float]:
    """MSE per pixel of the denoised test images against the clean ones, and of the noisy
    inputs themselves."""
    noisy = corrupt(config, images)
    denoised = models.reconstruct(noisy).reshape(images.shape)
    return {
        "test_denoising_mse_per_pixel": float(np.mean((denoised - images) ** 2)),
        "test_noisy_input_mse_per_pixel": float(np.mean((noisy - images) ** 2)),
    }


FAMILY = register(dense_family(
    name="denoising",
    summary="the stacked model with Dropout(0.5) (or GaussianNoise(0.2)) on its inputs, "
            "in training only",
    build=lambda config: build_denoising(
        blocks.require_image_shape(config), config.hidden, config.latent_dim,
        noise=config.noise, noise_stddev=config.noise_stddev,
        dropout_rate=config.dropout_rate, seed=config.seed),
    # HOML 3rd ed. ch. 17's notebook ("Denoising Autoencoders"): the stacked 100-30 model
    # with Dropout(0.5) on its inputs, 10 epochs; its Gaussian variant uses
    # GaussianNoise(0.2) (--noise gaussian).
    presets={"default": {**BOOK_STACKED, "epochs": 10, "noise": "dropout", "dropout_rate": 0.5},
             "tiny": TINY_DENSE},
    options=("noise", "noise_stddev", "dropout_rate"),
    # XLA: with the noise drawn from the layers' own state, the default run (Dropout, 10
    # epochs) is faster compiled, compilation included; --noise gaussian gains about
    # nothing from it (benchmarks/results/denoising_noise.md).
    xla=True,
    describe=lambda config: f"{describe_dense(config)}, {config.noise} noise on the inputs",
    metrics=lambda config, models, images: denoising_metrics(config, models, images),
    figures=(*COMMON_FIGURES, "denoising"),
    corrupt=corrupt,
))
