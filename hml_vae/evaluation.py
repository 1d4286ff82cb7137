"""Numbers that describe a trained model on held-out data.

Autoencoders: mean squared error per pixel (HOML's number), on validation and test images.
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
