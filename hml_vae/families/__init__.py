"""Model families: one module each, and the registry the rest of hml_vae looks them up in.

Each family module (stacked, tied, conv, recurrent, denoising, sparse, greedy, vae,
conv_vae) declares a :class:`~hml_vae.families.family.Family`: its builder, presets,
options, checks, metrics, figures and speed defaults. Adding a family is one file here
and one import below.

Example:
    >>> from hml_vae import families
    >>> families.names()
    ('stacked', 'tied', 'conv', ...)
    >>> models = families.build(make_config("vae", image_shape=(32, 32, 3)))
"""

from __future__ import annotations

from pathlib import Path

# Each module registers its family when imported; this order (the book's) is the order of
# --help and the README.
from hml_vae.families import (
    conv,  # noqa: F401
    conv_vae,  # noqa: F401
    denoising,  # noqa: F401
    greedy,  # noqa: F401
    recurrent,  # noqa: F401
    sparse,  # noqa: F401
    stacked,  # noqa: F401, I001
    tied,  # noqa: F401
    vae,  # noqa: F401
)
from hml_vae.families.bundle import AutoencoderModels, ModelBundle, VAEModels
from hml_vae.families.family import Family, families_with_option, get, names, presets

__all__ = ["AutoencoderModels", "Family", "ModelBundle", "VAEModels", "build",
           "families_with_option", "get", "load_bundle", "names", "presets"]


def build(config) -> ModelBundle:
    """The untrained models of ``config.model`` for ``config.image_shape``."""
    return get(config.model).build(config)


def load_bundle(config, directory: str | Path) -> ModelBundle:
    """The saved models of a run directory as the family's bundle."""
    return get(config.model).bundle_type.load(directory)
