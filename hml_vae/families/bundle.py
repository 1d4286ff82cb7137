"""The model bundle: one interface to every family's trained models.

A bundle holds three named Keras Functional models that share their layers: ``encoder``
(images -> coding), ``decoder`` (coding -> images) and the trainable ``whole`` (images ->
reconstructions, what ``fit`` trains and ``model.keras`` holds). Training, evaluation,
plots, export and the semi-supervised experiments use only this interface.

Images are float32 (N, H, W, C) in [0, 1]. Every method is deterministic: a VAE codes an
image by its posterior mean; :meth:`VAEModels.generate` decodes prior draws.

Example:
    >>> models = hml_vae.families.build(config)
    >>> models.coding(images).shape        # (N, latent_dim)
    >>> models.reconstruct(images).shape   # (N, H, W, C)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
from keras import ops

MODEL_FILES = ("model.keras", "encoder.keras", "decoder.keras")


# Keras reduces an integer seed modulo this before TensorFlow's stateless generator; an
# exported generate signature does the same (hml_vae.export.signatures).
KERAS_SEED_MODULUS = 2**31 - 2


def prior_codings(count: int, latent_dim: int, seed: int) -> np.ndarray:
    """z ~ N(0, I) (count, latent_dim) from Keras's stateless generator keyed by ``seed``:
    the draws of an exported ``generate`` signature for the same (count, seed)."""
    return np.asarray(keras.random.normal((count, latent_dim), seed=int(seed)), np.float32)


def _batches(array: np.ndarray, batch_size: int):
    # Direct (eager) calls rather than predict(): evaluation calls these on many
    # differently sized arrays, and predict() would retrace its tf.function for each.
    return [array[start : start + batch_size] for start in range(0, len(array), batch_size)]


def _call(model: keras.Model, array, batch_size: int) -> np.ndarray:
    array = np.asarray(array, np.float32)
    return np.concatenate([np.asarray(model(batch, training=False))
                           for batch in _batches(array, batch_size)])


@dataclasses.dataclass(frozen=True)
class ModelBundle:
    """What every family's models offer (see the module docstring).

    Attributes:
        encoder, decoder, whole: the three named models.
    """

    encoder: keras.Model
    decoder: keras.Model
    whole: keras.Model

    variational = False

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.input_shape[-1])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(size) for size in self.whole.input_shape[1:])

    def coding(self, images, batch_size: int = 256) -> np.ndarray:
        """The deterministic coding (N, latent_dim)."""
        raise NotImplementedError

    def decode(self, codings, batch_size: int = 256) -> np.ndarray:
        """Images (N, H, W, C) for codings (N, latent_dim)."""
        raise NotImplementedError

    def reconstruct(self, images, batch_size: int = 256) -> np.ndarray:
        """Deterministic reconstructions (N, H, W, C) of ``images``."""
        return self.decode(self.coding(images, batch_size), batch_size)

    def save(self, directory: str | Path) -> None:
        """Writes ``model.keras``, ``encoder.keras`` and ``decoder.keras``."""
        directory = Path(directory)
        self.whole.save(directory / "model.keras")
        self.encoder.save(directory / "encoder.keras")
        self.decoder.save(directory / "decoder.keras")


@dataclasses.dataclass(frozen=True)
class AutoencoderModels(ModelBundle):
    """An autoencoder's models; its coding is the encoder's output."""

    @property
    def autoencoder(self) -> keras.Model:
        return self.whole

    def encode(self, images, batch_size: int = 256) -> np.ndarray:
        return self.coding(images, batch_size)

    def coding(self, images, batch_size: int = 256) -> np.ndarray:
        codings = _call(self.encoder, images, batch_size)
        return codings.reshape(len(codings), -1)

    def decode(self, codings, batch_size: int = 256) -> np.ndarray:
        return _call(self.decoder, codings, batch_size)

    def reconstruct(self, images, batch_size: int = 256) -> np.ndarray:
        return _call(self.whole, images, batch_size)

    @classmethod
    def load(cls, directory: str | Path) -> AutoencoderModels:
        """The bundle of a run directory: each model from its own file, because the tied
        model is one flat graph whose encoder and decoder are not sublayers of it."""
        directory = Path(directory)
        return cls(*(keras.saving.load_model(directory / name)
                     for name in ("encoder.keras", "decoder.keras", "model.keras")))


def check_images(images, likelihood: str = "bernoulli") -> np.ndarray:
    """The images as float32, or ValueError when no VAE should see them.

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


@dataclasses.dataclass(frozen=True)
class VAEModels(ModelBundle):
    """A VAE's models. ``encoder`` returns ``[z_mean, z_log_var, z]``; ``decoder`` returns
    logits (Bernoulli) or means (Gaussian); the whole holds the ``reconstruction_loss``."""

    variational = True

    @classmethod
    def from_vae(cls, vae: keras.Model) -> VAEModels:
        """The bundle of a (re)loaded ``vae`` model: its encoder and decoder are sublayers."""
        return cls(vae.get_layer("encoder"), vae.get_layer("decoder"), vae)

    @classmethod
    def load(cls, directory: str | Path) -> VAEModels:
        return cls.from_vae(keras.saving.load_model(Path(directory) / "model.keras"))

    @property
    def vae(self) -> keras.Model:
        return self.whole

    @property
    def sampling(self):
        return self.encoder.get_layer("sampling")

    @property
    def reconstruction_loss(self):
        return self.whole.get_layer("reconstruction_loss")

    @property
    def likelihood(self) -> str:
        return self.reconstruction_loss.likelihood

    def encode(self, images, batch_size: int = 256):
        """(z_mean, z_log_var) of q(z|x), as NumPy arrays (N, latent_dim)."""
        images = check_images(images, self.likelihood)
        outputs = [self.encoder(batch, training=False)[:2]
                   for batch in _batches(images, batch_size)]
        z_mean = np.concatenate([np.asarray(mean) for mean, _ in outputs])
        z_log_var = np.concatenate([np.asarray(log_var) for _, log_var in outputs])
        return z_mean, z_log_var

    def posterior_model(self) -> keras.Model:
        """images -> [z_mean, z_log_var]: the encoder without its Sampling layer (no random
        draw, no ``add_loss``), for deterministic graphs such as exported signatures."""
        encoder = self.encoder
        return keras.Model(encoder.inputs, [encoder.get_layer("z_mean").output,
                                            encoder.get_layer("z_log_var").output],
                           name="posterior")

    def coding(self, images, batch_size: int = 256) -> np.ndarray:
        """The posterior mean (N, latent_dim)."""
        return self.encode(images, batch_size)[0]

    def decode(self, codings, batch_size: int = 256) -> np.ndarray:
        """Pixel probabilities (Bernoulli) or means (Gaussian), (N, H, W, C)."""
        return self.output_to_images(_call(self.decoder, codings, batch_size))

    def output_to_images(self, outputs) -> np.ndarray:
        if self.likelihood == "bernoulli":
            return np.asarray(ops.sigmoid(outputs))
        return np.asarray(outputs)

    def generate(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` images decoded from z ~ N(0, I) drawn with ``seed``."""
        if count <= 0:
            raise ValueError(f"count must be a positive number of images, got {count}.")
        return self.decode(prior_codings(count, self.latent_dim, seed))

    # What evaluation needs from any latent-variable model (see
    # hml_vae.evaluation.LinearGaussianModel for the other implementation).

    def posterior(self, images):
        """(z_mean, z_log_var) NumPy arrays of q(z|x)."""
        return self.encode(images)

    def log_likelihood(self, images, z):
        """(N,) log p(x|z) tensor for images (N, ...) and codings z (N, latent_dim)."""
        outputs = self.decoder(z, training=False)
        return -self.reconstruction_loss.negative_log_likelihood(images, outputs)
