"""Variational autoencoders (lecture; HOML ch. 17) as named Keras Functional models.

``encoder``: images (B, 28, 28) in [0, 1] -> ``[z_mean, z_log_var, z]``;
``decoder``: z (B, latent_dim) -> logits (Bernoulli) or means (Gaussian), (B, 28, 28);
``vae``: images -> decoder outputs, trained with ``model.fit`` on −ELBO, whose two terms
are added by layers: β·KL by ``Sampling`` and −log p(x|z) by ``ReconstructionLoss``.

Example:
    >>> models = build_dense_vae(hidden=(150, 100), latent_dim=10)
    >>> models.vae.compile(optimizer="nadam")
    >>> models.vae.fit(images, epochs=25, batch_size=128)  # images: (N, 28, 28) in [0, 1]
    >>> models.generate(16, seed=0).shape
    (16, 28, 28)
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from hml_vae.layers import ReconstructionLoss, Sampling, check_likelihood

IMAGE_SHAPE = (28, 28)
PIXELS = 28 * 28


def check_images(images, likelihood: str = "bernoulli") -> np.ndarray:
    """The images as float32, or ValueError when no VAE should see them.

    Args:
        images: (N, 28, 28) or (N, 784) pixel values.
        likelihood: ``bernoulli`` needs values in [0, 1].

    Raises:
        ValueError: NaN/infinite values, or values outside [0, 1] for a Bernoulli decoder.
    """
    images = np.asarray(images, dtype=np.float32)
    if not np.all(np.isfinite(images)):
        bad = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
        raise ValueError(
            f"images contain {bad} NaN or infinite values; clean the data (pixels / 255 as "
            f"float32) before training or evaluating."
        )
    if likelihood == "bernoulli" and images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"a Bernoulli decoder needs pixel values in [0, 1], got values in "
            f"[{images.min():g}, {images.max():g}]. Divide uint8 images by 255, or use "
            f"--likelihood gaussian for real-valued data."
        )
    return images


def _batches(array: np.ndarray, batch_size: int):
    # Direct (eager) calls rather than predict(): evaluation calls these on many
    # differently sized arrays, and predict() would retrace its tf.function for each.
    return [array[start : start + batch_size] for start in range(0, len(array), batch_size)]


@dataclasses.dataclass(frozen=True)
class VAEModels:
    """The named models of a VAE (they share layers) and the small API plots and export use.

    ``encode``, ``reconstruct`` and ``decode`` are deterministic (posterior mean);
    ``generate`` decodes draws from the prior.
    """

    encoder: keras.Model
    decoder: keras.Model
    vae: keras.Model

    @classmethod
    def from_vae(cls, vae: keras.Model) -> VAEModels:
        """The bundle of a (re)loaded ``vae`` model: its encoder and decoder are sublayers."""
        return cls(vae.get_layer("encoder"), vae.get_layer("decoder"), vae)

    @property
    def whole(self) -> keras.Model:
        """The trainable whole (``fit`` and ``model.keras``)."""
        return self.vae

    @property
    def sampling(self) -> Sampling:
        return self.encoder.get_layer("sampling")

    @property
    def reconstruction_loss(self) -> ReconstructionLoss:
        return self.vae.get_layer("reconstruction_loss")

    @property
    def likelihood(self) -> str:
        return self.reconstruction_loss.likelihood

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.input_shape[-1])

    def encode(self, images, batch_size: int = 256):
        """(z_mean, z_log_var) of q(z|x), as NumPy arrays (N, latent_dim)."""
        images = check_images(images, self.likelihood)
        outputs = [self.encoder(batch, training=False)[:2]
                   for batch in _batches(images, batch_size)]
        z_mean = np.concatenate([np.asarray(mean) for mean, _ in outputs])
        z_log_var = np.concatenate([np.asarray(log_var) for _, log_var in outputs])
        return z_mean, z_log_var

    def coding(self, images, batch_size: int = 256) -> np.ndarray:
        """The deterministic coding (N, latent_dim): the posterior mean."""
        return self.encode(images, batch_size)[0]

    def decode(self, codings, batch_size: int = 256) -> np.ndarray:
        """Images (N, 28, 28) for codings: pixel probabilities (Bernoulli) or means."""
        codings = np.asarray(codings, np.float32)
        outputs = np.concatenate([np.asarray(self.decoder(batch, training=False))
                                  for batch in _batches(codings, batch_size)])
        return self.output_to_images(outputs)

    def output_to_images(self, outputs) -> np.ndarray:
        if self.likelihood == "bernoulli":
            return np.asarray(ops.sigmoid(outputs))
        return np.asarray(outputs)

    def reconstruct(self, images, batch_size: int = 256) -> np.ndarray:
        """Deterministic reconstructions: decode the posterior mean."""
        z_mean, _ = self.encode(images, batch_size)
        return self.decode(z_mean, batch_size)

    def generate(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` images decoded from z ~ N(0, I) drawn with ``seed``."""
        if count <= 0:
            raise ValueError(f"count must be a positive number of images, got {count}.")
        codings = np.random.default_rng(seed).standard_normal((count, self.latent_dim))
        return self.decode(codings.astype(np.float32))

    # The two functions below are what evaluation needs from any latent-variable model
    # (see hml_vae.evaluation.LinearGaussianModel for the other implementation).

    def posterior(self, images):
        """(z_mean, z_log_var) NumPy arrays of q(z|x)."""
        return self.encode(images)

    def log_likelihood(self, images, z):
        """(N,) log p(x|z) tensor for images (N, ...) and codings z (N, latent_dim)."""
        outputs = self.decoder(z, training=False)
        return -self.reconstruction_loss.negative_log_likelihood(images, outputs)


def check_sizes(hidden, latent_dim: int) -> None:
    sizes = (*tuple(hidden), latent_dim)
    if any(not isinstance(size, int) or size <= 0 for size in sizes):
        raise ValueError(
            f"layer sizes and latent_dim must be positive integers, got hidden="
            f"{list(hidden)}, latent_dim={latent_dim}; e.g. --hidden 150,100 --latent-dim 10."
        )


def _posterior_heads(x, latent_dim: int, beta: float, free_bits: float, seed):
    """Dense heads for μ and log σ² and the sampling step: features -> [μ, log σ², z]."""
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling(beta=beta, free_bits=free_bits, seed=seed, name="sampling")(
        [z_mean, z_log_var]
    )
    return [z_mean, z_log_var, z]


def assemble(encoder, decoder, likelihood, gaussian_sigma, learned_sigma) -> VAEModels:
    """The trainable whole: images -> z -> decoder outputs, plus the reconstruction loss."""
    images = keras.Input(shape=IMAGE_SHAPE, name="images")
    _, _, z = encoder(images)
    outputs = decoder(z)
    outputs = ReconstructionLoss(
        likelihood=likelihood, gaussian_sigma=gaussian_sigma, learned_sigma=learned_sigma,
        image_shape=IMAGE_SHAPE, name="reconstruction_loss",
    )([images, outputs])
    return VAEModels(encoder, decoder, keras.Model(images, outputs, name="vae"))


def build_dense_vae(hidden=(150, 100), latent_dim: int = 10, likelihood: str = "bernoulli",
                    gaussian_sigma: float = 1.0, learned_sigma: str = "none",
                    beta: float = 1.0, free_bits: float = 0.0, seed=None,
                    activation: str = "relu") -> VAEModels:
    """Dense VAE: 784 -> hidden... -> (μ, log σ²) -> z -> reversed(hidden)... -> 784.

    HOML's recipe is ``hidden=(150, 100), latent_dim=10``; the PyTorch examples' is
    ``hidden=(400,), latent_dim=20``. The decoder's last layer is linear: logits for a
    Bernoulli decoder, means for a Gaussian one.

    Returns:
        :class:`VAEModels` with ``encoder``, ``decoder`` and ``vae``.
    """
    check_sizes(hidden, latent_dim)
    check_likelihood(likelihood, gaussian_sigma, learned_sigma)
    images = keras.Input(shape=IMAGE_SHAPE, name="images")
    x = keras.layers.Flatten(name="flatten")(images)  # (B, 28, 28) -> (B, 784)
    for index, size in enumerate(hidden):
        x = keras.layers.Dense(size, activation=activation, name=f"encoder_dense_{index}")(x)
    encoder = keras.Model(
        images, _posterior_heads(x, latent_dim, beta, free_bits, seed), name="encoder"
    )

    codings = keras.Input(shape=(latent_dim,), name="z")
    x = codings
    for index, size in enumerate(reversed(hidden)):
        x = keras.layers.Dense(size, activation=activation, name=f"decoder_dense_{index}")(x)
    x = keras.layers.Dense(PIXELS, name="decoder_output")(x)  # (B, latent) -> (B, 784)
    outputs = keras.layers.Reshape(IMAGE_SHAPE, name="reconstruction")(x)
    decoder = keras.Model(codings, outputs, name="decoder")
    return assemble(encoder, decoder, likelihood, gaussian_sigma, learned_sigma)


def build_conv_vae(filters=(32, 64), latent_dim: int = 10, likelihood: str = "bernoulli",
                   gaussian_sigma: float = 1.0, learned_sigma: str = "none",
                   beta: float = 1.0, free_bits: float = 0.0, seed=None,
                   activation: str = "relu") -> VAEModels:
    """Convolutional VAE: two stride-2 convolutions (28 -> 14 -> 7) and their transposes.

    Args:
        filters: channels of the two encoder convolutions (``config.hidden``), e.g. (32, 64).
        Other arguments as :func:`build_dense_vae`.
    """
    check_sizes(filters, latent_dim)
    check_likelihood(likelihood, gaussian_sigma, learned_sigma)
    if len(filters) != 2:
        raise ValueError(
            f"conv_vae takes two filter counts (28 -> 14 -> 7 pixels), got {list(filters)}; "
            f"e.g. --hidden 32,64."
        )
    images = keras.Input(shape=IMAGE_SHAPE, name="images")
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="add_channel")(images)
    for index, count in enumerate(filters):
        x = keras.layers.Conv2D(count, 3, strides=2, padding="same", activation=activation,
                                name=f"encoder_conv_{index}")(x)  # halves height and width
    x = keras.layers.Flatten(name="flatten")(x)  # (B, 7, 7, filters[-1]) -> (B, 49·filters)
    encoder = keras.Model(
        images, _posterior_heads(x, latent_dim, beta, free_bits, seed), name="encoder"
    )

    codings = keras.Input(shape=(latent_dim,), name="z")
    x = keras.layers.Dense(7 * 7 * filters[-1], activation=activation, name="decoder_dense")(
        codings
    )
    x = keras.layers.Reshape((7, 7, filters[-1]), name="decoder_reshape")(x)
    x = keras.layers.Conv2DTranspose(filters[0], 3, strides=2, padding="same",
                                     activation=activation, name="decoder_deconv_0")(x)
    x = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same",
                                     name="decoder_output")(x)  # linear: logits or means
    outputs = keras.layers.Reshape(IMAGE_SHAPE, name="reconstruction")(x)
    decoder = keras.Model(codings, outputs, name="decoder")
    return assemble(encoder, decoder, likelihood, gaussian_sigma, learned_sigma)


def find_sampling_layers(model: keras.Model) -> list[Sampling]:
    """Every ``Sampling`` layer in ``model``, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, Sampling):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(find_sampling_layers(layer))
    return found


class BetaWarmup(keras.callbacks.Callback):
    """Raises β linearly from 0 to ``beta`` over ``warmup_epochs`` epochs, then holds it.

    In epoch e (0-based) β = beta · min(1, e / warmup_epochs): the first epoch trains the
    reconstruction alone, epoch ``warmup_epochs`` onwards the full (β-)ELBO. It sets the
    non-trainable ``beta`` variable of every ``Sampling`` layer and logs ``beta``. It
    depends only on the epoch number, so a resumed run continues the same schedule.

    Args:
        beta: the final β.
        warmup_epochs: epochs to reach it (0: constant β).
    """

    def __init__(self, beta: float = 1.0, warmup_epochs: int = 0):
        super().__init__()
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}.")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}.")
        self.target_beta = float(beta)
        self.warmup_epochs = int(warmup_epochs)

    def beta_at(self, epoch: int) -> float:
        if self.warmup_epochs == 0:
            return self.target_beta
        return self.target_beta * min(1.0, epoch / self.warmup_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        layers = find_sampling_layers(self.model)
        if not layers:
            raise ValueError("BetaWarmup needs a model with a Sampling layer (a VAE).")
        for layer in layers:
            layer.beta.assign(self.beta_at(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = self.beta_at(epoch)
