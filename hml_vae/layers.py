"""Custom Keras layers of hml_vae, each registered for ``.keras`` serialization.

Sections: the variational autoencoder's layers (``Sampling``, ``ReconstructionLoss``).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from hml_vae import losses

# =========================================================================================
# Variational autoencoder: reparameterized sampling with the KL term, and the decoder's
# reconstruction negative log-likelihood. Both add their loss with ``self.add_loss``
# (Keras 3 dropped ``model.add_loss`` on symbolic tensors) and report it as a metric so
# the training history shows the two parts of −ELBO separately.
# =========================================================================================

LIKELIHOODS = ("bernoulli", "gaussian")
LEARNED_SIGMA = ("none", "global", "pixel")


@keras.saving.register_keras_serializable(package="hml_vae")
class Sampling(keras.layers.Layer):
    """Draws ``z = μ + exp(½ log σ²)·ε``, ε ~ N(0, I), and adds ``β·KL(q(z|x) || N(0, I))``.

    The reparameterization trick: the randomness is in ε only, so gradients of the loss
    reach μ and log σ² (and the encoder). The KL term (lecture eq. 2) is averaged over the
    batch, in nats per image, multiplied by β and added with ``self.add_loss``. β lives in
    a non-trainable variable (``layer.beta``) so :class:`hml_vae.models.vae.BetaWarmup`
    can anneal it during ``fit``. The unweighted KL is tracked as the metric ``kl``.

    Args:
        beta: weight of the KL term (1 is the ELBO; β > 1 is a β-VAE).
        free_bits: λ ≥ 0 nats per latent dimension. When positive the penalty is
            ``Σ_l max(λ, mean_batch KL_l)`` (Kingma et al. 2016): dimensions below λ are
            not pushed further towards the prior, which fights posterior collapse.
        seed: seed of the layer's own ``SeedGenerator``.
        deterministic: return μ instead of a sample (evaluation, export, plots). The KL
            term is still added.

    ``get_config`` stores the β the layer was built with; the current (possibly annealed)
    β is a weight, saved and restored with the model's weights.

    Example:
        >>> z = Sampling(seed=1)([z_mean, z_log_var])  # (B, latent_dim)
    """

    def __init__(self, beta=1.0, free_bits=0.0, seed=None, deterministic=False, **kwargs):
        super().__init__(**kwargs)
        if beta is None or not beta >= 0:
            raise ValueError(
                f"beta must be a number >= 0 (1 for the ELBO), got {beta!r}."
            )
        if free_bits is None or not free_bits >= 0:
            raise ValueError(
                f"free_bits must be >= 0 nats per latent dimension (0 turns it off), got "
                f"{free_bits!r}."
            )
        self.initial_beta = float(beta)
        self.free_bits = float(free_bits)
        self.seed = seed
        self.deterministic = bool(deterministic)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.beta = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_beta),
            trainable=False, name="beta",
        )
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def call(self, inputs):
        z_mean, z_log_var = inputs
        kl_per_dimension = losses.kl_divergence_per_dimension(z_mean, z_log_var)  # (B, L)
        kl = ops.mean(ops.sum(kl_per_dimension, axis=-1))
        if self.free_bits > 0:
            # Batch average per dimension first: the free-bits budget is per dimension of
            # the code, not per image.
            penalty = ops.sum(ops.maximum(ops.mean(kl_per_dimension, axis=0), self.free_bits))
        else:
            penalty = kl
        self.add_loss(ops.cast(self.beta, penalty.dtype) * penalty)
        self.kl_tracker.update_state(kl)
        if self.deterministic:
            return z_mean
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(
            beta=self.initial_beta,
            free_bits=self.free_bits,
            seed=self.seed,
            deterministic=self.deterministic,
        )
        return config


@keras.saving.register_keras_serializable(package="hml_vae")
class ReconstructionLoss(keras.layers.Layer):
    """Adds the decoder's −log p(x|z), averaged over the batch, with ``self.add_loss``.

    Sits at the end of the ``vae`` model: takes ``(images, decoder_outputs)`` and returns
    the decoder outputs unchanged. Holding the likelihood here (not in a compiled loss)
    keeps a learned σ with the model and lets a saved ``.keras`` file reload without any
    custom loss function. The value is tracked as the metric ``reconstruction_nll``.

    Args:
        likelihood: ``bernoulli`` (decoder outputs logits) or ``gaussian`` (decoder outputs
            means; the NLL includes the ``784/2 log(2πσ²)`` constant).
        gaussian_sigma: the fixed σ of a Gaussian decoder, or the initial value of a
            learned σ. σ = 1 is the lecture's eq. 3.
        learned_sigma: ``none``, ``global`` (one learned log σ) or ``pixel`` (one per
            pixel).
        image_shape: shape of one image, for the per-pixel log σ.
    """

    def __init__(self, likelihood="bernoulli", gaussian_sigma=1.0, learned_sigma="none",
                 image_shape=(28, 28), **kwargs):
        super().__init__(**kwargs)
        check_likelihood(likelihood, gaussian_sigma, learned_sigma)
        self.likelihood = likelihood
        self.gaussian_sigma = float(gaussian_sigma)
        self.learned_sigma = learned_sigma
        self.image_shape = tuple(image_shape)
        self.log_sigma = None
        if likelihood == "gaussian" and learned_sigma != "none":
            shape = () if learned_sigma == "global" else self.image_shape
            self.log_sigma = self.add_weight(
                shape=shape,
                initializer=keras.initializers.Constant(math.log(self.gaussian_sigma)),
                trainable=True, name="log_sigma",
            )
        self.nll_tracker = keras.metrics.Mean(name="reconstruction_nll")

    def negative_log_likelihood(self, images, outputs):
        """(B,) −log p(x|z) in nats per image for decoder ``outputs`` (logits or means)."""
        if self.likelihood == "bernoulli":
            return losses.bernoulli_nll(images, outputs)
        log_sigma = (
            math.log(self.gaussian_sigma) if self.log_sigma is None
            else ops.convert_to_tensor(self.log_sigma)
        )
        return losses.gaussian_nll(images, outputs, log_sigma)

    def call(self, inputs):
        images, outputs = inputs
        nll = ops.mean(self.negative_log_likelihood(images, outputs))
        self.add_loss(nll)
        self.nll_tracker.update_state(nll)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        config = super().get_config()
        config.update(
            likelihood=self.likelihood,
            gaussian_sigma=self.gaussian_sigma,
            learned_sigma=self.learned_sigma,
            image_shape=self.image_shape,
        )
        return config


def check_likelihood(likelihood, gaussian_sigma=1.0, learned_sigma="none") -> None:
    """Raises ValueError for a likelihood no decoder can have."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"unknown likelihood {likelihood!r}; expected one of {', '.join(LIKELIHOODS)} "
            f"(bernoulli for images in [0, 1], gaussian for real-valued pixels)."
        )
    if learned_sigma not in LEARNED_SIGMA:
        raise ValueError(
            f"unknown learned_sigma {learned_sigma!r}; expected one of "
            f"{', '.join(LEARNED_SIGMA)}."
        )
    if gaussian_sigma is None or not gaussian_sigma > 0:
        raise ValueError(
            f"the Gaussian decoder's sigma must be > 0, got {gaussian_sigma!r}; 1.0 is the "
            f"lecture's eq. 3."
        )
