"""Model families: one module each, and the registry the rest of hml_vae looks them up in.

Each family module (stacked, tied, conv, recurrent, denoising, sparse, greedy, vae,
conv_vae, hashing) declares a :class:`~hml_vae.families.family.Family`: its builder, presets,
options, checks, metrics, figures and speed defaults. Adding a family is one file here
and one import below.

Example:
    >>> from hml_vae import families
    >>> families.names()
    ('stacked', 'tied', 'conv', ...)
    >>> models = families.build(make_config("vae", image_shape=(32, 32, 3)))
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hml_vae.families.bundle import AutoencoderModels, ModelBundle, VAEModels
from hml_vae.families.family import Family, families_with_option, get, names, presets

# The family modules, in the book's order: the order of --help and the README. Each
# registers its family when imported, so adding a family is one module and one name here.
MODULES = ("stacked", "tied", "conv", "recurrent", "denoising", "sparse", "greedy", "vae",
           "conv_vae", "hashing")
for _module in MODULES:
    importlib.import_module(f"hml_vae.families.{_module}")

__all__ = ["MODULES", "AutoencoderModels", "Family", "ModelBundle", "VAEModels", "build",
           "families_with_option", "get", "load_bundle", "names", "presets"]


def build(config) -> ModelBundle:
    """The untrained models of ``config.model`` for ``config.image_shape``."""
    return get(config.model).build(config)


def load_bundle(config, directory: str | Path) -> ModelBundle:
    """The saved models of a run directory as the family's bundle."""
    return get(config.model).bundle_type.load(directory)
