"""Reconstruction log-likelihoods and the closed-form KL term of the VAE, as pure functions.

Every function works on NumPy arrays and on backend tensors (it only uses ``keras.ops``),
returns one number per image (shape ``(batch,)``) and is in nats. Sums run over every
non-batch axis (the H·W·C pixel values, or the latent dimensions), so ``(B, 28, 28, 1)``
and ``(B, 784)`` give the same result.

Example:
    >>> kl_divergence(np.zeros((2, 10)), np.zeros((2, 10)))  # q = p = N(0, I)
    array([0., 0.], dtype=float32)
"""

from __future__ import annotations

import math

from keras import ops

LOG_TWO_PI = math.log(2.0 * math.pi)


def _sum_per_example(values):
    """Sums every axis but the first: (B, ...) -> (B,)."""
    values = ops.convert_to_tensor(values)
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def kl_divergence(z_mean, z_log_var):
    """KL(q(z|x) || N(0, I)) for a diagonal Gaussian q (docs/vae.md, eq. 10), per image.

    ``KL = -1/2 Σ_l (1 + log σ_l² − σ_l² − μ_l²)``.

    Args:
        z_mean: (B, latent_dim) posterior means μ.
        z_log_var: (B, latent_dim) posterior log-variances log σ².

    Returns:
        (B,) KL in nats, summed over the latent dimensions.
    """
    return _sum_per_example(kl_divergence_per_dimension(z_mean, z_log_var))


def kl_divergence_per_dimension(z_mean, z_log_var):
    """The terms of :func:`kl_divergence` before summing: (B, latent_dim), in nats.

    Free bits need them per latent dimension.
    """
    z_mean = ops.convert_to_tensor(z_mean, dtype="float32")
    z_log_var = ops.convert_to_tensor(z_log_var, dtype="float32")
    return -0.5 * (1.0 + z_log_var - ops.exp(z_log_var) - ops.square(z_mean))


def bernoulli_nll(images, logits):
    """−log p(x|z) of a Bernoulli decoder given its logits, summed over pixels.

    Computed as ``softplus(l) − x·l``, which is exact and stable for any logit (no sigmoid
    followed by a log, which underflows for confident pixels). It is a normalized
    likelihood only for binary ``images``; on gray pixels it is a loss (binary
    cross-entropy), not a log-likelihood.

    Args:
        images: (B, ...) targets in [0, 1].
        logits: (B, ...) decoder outputs, same shape as ``images``.

    Returns:
        (B,) negative log-likelihood in nats per image.
    """
    images = ops.convert_to_tensor(images, dtype="float32")
    logits = ops.convert_to_tensor(logits, dtype="float32")
    return _sum_per_example(ops.softplus(logits) - images * logits)


def gaussian_nll(images, means, log_sigma=0.0, include_constant=True):
    """−log p(x|z) of a Gaussian decoder with standard deviation σ (docs/vae.md, eq. 12).

    ``1/2 Σ (x − x̂)²/σ² + Σ log σ + D/2 log 2π`` over the D pixels, i.e. with a single
    σ: ``1/2 Σ (x − x̂)²/σ² + D/2 log(2πσ²)``. The loss ``1/2 Σ (x − x̂)²`` is
    the case σ = 1 (``log_sigma=0``) with ``include_constant=False``; only the version with
    the constant is a log-density, comparable across σ and with importance weights.

    Args:
        images: (B, ...) targets.
        means: (B, ...) decoder means x̂, same shape as ``images``.
        log_sigma: log σ: a number (fixed or learned global σ) or a tensor broadcastable
            to one image (a learned σ per pixel).
        include_constant: add ``Σ log σ + D/2 log 2π``.

    Returns:
        (B,) negative log-density in nats per image.
    """
    images = ops.convert_to_tensor(images, dtype="float32")
    means = ops.convert_to_tensor(means, dtype="float32")
    log_sigma = ops.convert_to_tensor(log_sigma, dtype="float32")
    per_pixel = 0.5 * ops.square(images - means) * ops.exp(-2.0 * log_sigma)
    if include_constant:
        per_pixel = per_pixel + log_sigma + 0.5 * LOG_TWO_PI
    return _sum_per_example(per_pixel)


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))), summed over the last axis.

    Used for log q(z|x) and, with ``mean = log_var = 0``, for the prior log p(z) in
    importance weights.

    Args:
        z: (..., latent_dim) points.
        mean, log_var: broadcastable to ``z``.

    Returns:
        (...) log-densities in nats.
    """
    z = ops.convert_to_tensor(z, dtype="float32")
    mean = ops.convert_to_tensor(mean, dtype="float32")
    log_var = ops.convert_to_tensor(log_var, dtype="float32")
    terms = LOG_TWO_PI + log_var + ops.square(z - mean) * ops.exp(-log_var)
    return -0.5 * ops.sum(terms, axis=-1)


def standard_normal_log_density(z):
    """log N(z; 0, I) summed over the last axis: the VAE prior log p(z)."""
    z = ops.convert_to_tensor(z, dtype="float32")
    return -0.5 * ops.sum(LOG_TWO_PI + ops.square(z), axis=-1)
