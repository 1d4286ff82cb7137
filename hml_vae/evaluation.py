"""Numbers that describe a trained model on held-out data.

Autoencoders: mean squared error per pixel (HOML's number), on validation and test images;
per family, extra numbers (:func:`family_metrics`): how well a denoising model cleans noisy
test images, how sparse a sparse model's coding is.
"""

from __future__ import annotations

import numpy as np


def mse_per_pixel(model, images: np.ndarray, batch_size: int = 256) -> float:
    """Mean over images and pixels of (reconstruction - image)^2, deterministic."""
    reconstructions = model.predict(images, batch_size=batch_size, verbose=0)
    reconstructions = np.asarray(reconstructions).reshape(images.shape)
    return float(np.mean((reconstructions - images) ** 2))


def evaluate_autoencoder(models, data, batch_size: int = 256) -> dict[str, float]:
    """HOML's reconstruction error on the validation and test splits."""
    return {
        "valid_mse_per_pixel": mse_per_pixel(models.autoencoder, data.valid.images, batch_size),
        "test_mse_per_pixel": mse_per_pixel(models.autoencoder, data.test.images, batch_size),
    }


def corrupt_images(images: np.ndarray, noise: str, noise_stddev: float = 0.2,
                   dropout_rate: float = 0.5, seed: int = 0) -> np.ndarray:
    """The corruption a denoising model trained with, drawn once with ``seed``.

    Args:
        images: float32 (N, 28, 28) in [0, 1].
        noise: ``gaussian`` adds N(0, noise_stddev^2) per pixel; ``dropout`` zeroes pixels
            with probability ``dropout_rate`` and scales the others by 1 / (1 - rate),
            exactly what ``keras.layers.Dropout`` does in training (not clipped).

    Returns:
        float32 array shaped like ``images``.
    """
    rng = np.random.default_rng(seed)
    if noise == "gaussian":
        noisy = images + rng.normal(0.0, noise_stddev, size=images.shape)
    elif noise == "dropout":
        keep = rng.random(images.shape) >= dropout_rate
        noisy = np.where(keep, images / (1.0 - dropout_rate), 0.0)
    else:
        raise ValueError(f"unknown noise {noise!r}; expected gaussian or dropout.")
    return noisy.astype(np.float32)


def denoising_metrics(models, clean: np.ndarray, noisy: np.ndarray,
                      batch_size: int = 256) -> dict[str, float]:
    """MSE per pixel of the denoised images against the clean ones, and of the noisy
    inputs themselves as the reference a useful denoiser must beat.

    Returns:
        ``test_denoising_mse_per_pixel`` and ``test_noisy_input_mse_per_pixel``.
    """
    denoised = models.autoencoder.predict(noisy, batch_size=batch_size, verbose=0)
    denoised = np.asarray(denoised).reshape(clean.shape)
    return {
        "test_denoising_mse_per_pixel": float(np.mean((denoised - clean) ** 2)),
        "test_noisy_input_mse_per_pixel": float(np.mean((noisy - clean) ** 2)),
    }


def coding_mean_activation(models, images: np.ndarray, batch_size: int = 256) -> float:
    """Mean over images and coding units of the encoder's output (sparse models aim at
    their sparsity target)."""
    codings = models.encoder.predict(images, batch_size=batch_size, verbose=0)
    return float(np.mean(codings))


def family_metrics(config, models, data, batch_size: int = 256) -> dict[str, float]:
    """The numbers only some families have, on the test split.

    Args:
        config: the run's :class:`~hml_vae.config.Config` (``model`` picks the metrics).
        models: the trained AutoencoderModels.
        data: the run's Dataset.

    Returns:
        denoising: :func:`denoising_metrics` on test images corrupted like in training
        (seeded by the config); sparse: ``test_coding_mean_activation`` (and
        ``sparsity_target`` for the KL penalty); others: nothing.
    """
    if config.model == "denoising":
        noisy = corrupt_images(data.test.images, config.noise, config.noise_stddev,
                               config.dropout_rate, seed=config.seed)
        return denoising_metrics(models, data.test.images, noisy, batch_size)
    if config.model == "sparse":
        metrics = {"test_coding_mean_activation": coding_mean_activation(
            models, data.test.images, batch_size)}
        if config.sparsity == "kl":  # L1 has no target
            metrics["sparsity_target"] = config.sparsity_target
        return metrics
    return {}
