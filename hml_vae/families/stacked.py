"""Stacked autoencoder (HOML ch. 17): dense layers that narrow to the coding and mirror
back, ReLU, a linear output, MSE.

Example:
    >>> models = build_stacked((28, 28, 1), hidden=(100,), latent_dim=30)
    >>> models.whole(images).shape  # images: (B, 28, 28, 1) in [0, 1]
    TensorShape([B, 28, 28, 1])
"""

from __future__ import annotations

from hml_vae.families import blocks
from hml_vae.families.bundle import AutoencoderModels
from hml_vae.families.family import Family, register

# HOML 3rd ed. ch. 17's notebook ("Implementing a Stacked Autoencoder Using Keras"):
# 784-100-30-100-784, ReLU, a linear output, MSE, Nadam (learning rate 1e-3), 20 epochs,
# Keras' default batch of 32. Every dense family spells its recipe out in full.
BOOK_STACKED = {"hidden": (100,), "latent_dim": 30, "epochs": 20, "batch_size": 32,
                "optimizer": "nadam", "learning_rate": 1e-3}
# ``tiny`` trains in seconds for tests and smoke runs.
TINY_DENSE = {"hidden": (16,), "latent_dim": 8, "epochs": 1, "batch_size": 64}


def build_stacked(image_shape, hidden=(100,), latent_dim: int = 30,
                  activation: str = "relu") -> AutoencoderModels:
    """HOML's stacked autoencoder: H·W·C -> hidden... -> latent_dim and the mirror back.

    Args:
        image_shape: (H, W, C) of the images.
        hidden: encoder hidden sizes; the decoder mirrors them.
        latent_dim: size of the coding.
        activation: of every hidden and coding layer (the output layer is linear).

    Returns:
        AutoencoderModels: ``encoder`` (B, H, W, C) -> (B, latent_dim), ``decoder`` back.
    """
    hidden = tuple(hidden)
    blocks.check_undercomplete("stacked", (*hidden, latent_dim), blocks.pixel_count(image_shape))
    encoder = blocks.dense_encoder(image_shape, hidden, latent_dim, activation)
    return blocks.assemble(encoder, blocks.dense_decoder(image_shape, hidden, latent_dim,
                                                         activation))


def check_dense(config) -> None:
    """Sizes an undercomplete dense autoencoder can have for the config's images."""
    inputs = None if config.image_shape is None else blocks.pixel_count(config.image_shape)
    blocks.check_undercomplete(config.model, (*config.hidden, config.latent_dim), inputs)


def describe_dense(config) -> str:
    sizes = (blocks.pixel_count(config.image_shape), *config.hidden, config.latent_dim)
    mirrored = " → ".join(map(str, (*sizes, *reversed(sizes[:-1]))))
    return f"dense {mirrored} (images flattened from {'×'.join(map(str, config.image_shape))})"


def dense_family(**declared) -> Family:
    """A family of the stacked model's kind: dense, undercomplete, the book's stacked
    recipe as its default preset, XLA (unless ``declared`` says otherwise)."""
    defaults = {"presets": {"default": BOOK_STACKED, "tiny": TINY_DENSE},
                "bundle_type": AutoencoderModels,
                "xla": True, "check": check_dense, "describe": describe_dense}
    return Family(**{**defaults, **declared})


FAMILY = register(dense_family(
    name="stacked",
    summary="HOML's stacked autoencoder 784→100→30→100→784, ReLU, MSE",
    build=lambda config: build_stacked(blocks.require_image_shape(config), config.hidden,
                                       config.latent_dim),
))
