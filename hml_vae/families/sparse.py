"""Sparse autoencoder (HOML ch. 17): Dense(100) then a 300-unit sigmoid coding whose
activity is penalised: KL divergence of each unit's mean activation from a target (0.1,
weight 5e-3), or L1 (weight 1e-4). The coding may be wider than the layer before it: the
penalty, not the size, keeps it from copying its input."""

from __future__ import annotations

import keras
import numpy as np

from hml_vae.families import blocks
from hml_vae.families.bundle import AutoencoderModels
from hml_vae.families.family import COMMON_FIGURES, Family, register
from hml_vae.layers import KLDivergenceRegularizer

SPARSITY_KINDS = ("kl", "l1")
# HOML 3rd ed.'s weight for each penalty, used when --sparsity-weight is not given: the
# notebook's KLDivergenceRegularizer(weight=5e-3, target=0.1) and
# ActivityRegularization(l1=1e-4) (the 2nd edition's KL weight was 0.05). The book ran
# tf.keras 2, which divides an activity penalty by the batch size; Keras 3 does the same
# (keras/src/layers/layer.py, "Normalize by batch size"), so the book's weights keep their
# strength here.
DEFAULT_WEIGHTS = {"kl": 5e-3, "l1": 1e-4}


def make_sparsity_regularizer(sparsity: str, sparsity_target: float = 0.1,
                              sparsity_weight: float = 5e-3) -> keras.regularizers.Regularizer:
    """The activity regularizer of the coding: ``kl`` pulls each unit's mean activation
    to ``sparsity_target``; ``l1`` penalises the summed absolute activations."""
    if sparsity not in SPARSITY_KINDS:
        raise ValueError(f"unknown sparsity {sparsity!r}; expected one of: "
                         f"{', '.join(SPARSITY_KINDS)}.")
    if sparsity == "kl":
        return KLDivergenceRegularizer(weight=sparsity_weight, target=sparsity_target)
    if not sparsity_weight > 0:
        raise ValueError(f"sparsity weight must be positive, got {sparsity_weight!r}.")
    return keras.regularizers.L1(sparsity_weight)


def build_sparse(image_shape, hidden=(100,), latent_dim: int = 300, sparsity: str = "kl",
                 sparsity_target: float = 0.1, sparsity_weight: float = 5e-3,
                 activation: str = "relu") -> AutoencoderModels:
    """HOML's sparse autoencoder; the encoder's output layer is named ``coding``."""
    hidden = tuple(hidden)
    blocks.check_positive_sizes((*hidden, latent_dim))
    coding_layer = keras.layers.Dense(
        latent_dim, activation="sigmoid", name="coding",
        activity_regularizer=make_sparsity_regularizer(sparsity, sparsity_target,
                                                       sparsity_weight),
    )
    encoder = blocks.dense_encoder(image_shape, hidden, latent_dim, activation,
                                   coding_layer=coding_layer)
    return blocks.assemble(encoder, blocks.dense_decoder(image_shape, hidden, latent_dim,
                                                         activation))


def fill(config) -> dict:
    if config.sparsity_weight is None and config.sparsity in DEFAULT_WEIGHTS:
        return {"sparsity_weight": DEFAULT_WEIGHTS[config.sparsity]}
    return {}


def sparsity_metrics(config, models, images: np.ndarray) -> dict:
    """Mean activation of the coding units over the test images (and the KL target)."""
    metrics = {"test_coding_mean_activation": float(np.mean(models.coding(images)))}
    if config.sparsity == "kl":  # L1 has no target
        metrics["sparsity_target"] = config.sparsity_target
    return metrics


FAMILY = register(Family(
    name="sparse",
    summary="Dense(100) then a 300-unit sigmoid coding with a KL sparsity penalty (target "
            "0.1, weight 5e-3) or L1 (1e-4)",
    build=lambda config: build_sparse(
        blocks.require_image_shape(config), config.hidden, config.latent_dim,
        sparsity=config.sparsity, sparsity_target=config.sparsity_target,
        sparsity_weight=config.sparsity_weight),
    # HOML 3rd ed. ch. 17's notebook ("Sparse Autoencoder"): MSE, Nadam, 10 epochs, batch
    # 32; --sparsity l1 is its first model (the weight then defaults to 1e-4).
    presets={
        "default": {"hidden": (100,), "latent_dim": 300, "sparsity": "kl",
                    "sparsity_target": 0.1, "epochs": 10, "batch_size": 32,
                    "optimizer": "nadam", "learning_rate": 1e-3},
        "tiny": {"hidden": (16,), "latent_dim": 32, "epochs": 1, "batch_size": 64},
    },
    bundle_type=AutoencoderModels,
    options=("sparsity", "sparsity_target", "sparsity_weight"),
    xla=True,
    # Unlike the other dense families, the coding may be wider than the layer before it.
    check=lambda config: blocks.check_positive_sizes((*config.hidden, config.latent_dim)),
    fill=fill,
    describe=lambda config: (f"dense {'-'.join(map(str, config.hidden))} then "
                             f"{config.latent_dim} sigmoid coding units, {config.sparsity} "
                             f"penalty weight {config.sparsity_weight}"),
    metrics=sparsity_metrics,
    figures=(*COMMON_FIGURES, "sparsity"),
))
