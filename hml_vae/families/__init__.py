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

import contextlib
import importlib
from pathlib import Path

import keras

from hml_vae.families.bundle import AutoencoderModels, ModelBundle, VAEModels
from hml_vae.families.family import Family, families_with_option, get, names, presets

# The family modules, in the book's order: the order of --help and the README. Each
# registers its family when imported, so adding a family is one module and one name here.
MODULES = ("stacked", "tied", "conv", "recurrent", "denoising", "sparse", "greedy", "vae",
           "conv_vae", "hashing")
for _module in MODULES:
    importlib.import_module(f"hml_vae.families.{_module}")

__all__ = ["MODULES", "AutoencoderModels", "Family", "ModelBundle", "VAEModels", "build",
           "dtype_policy", "families_with_option", "get", "in_float32", "load_bundle",
           "names", "presets"]


def build(config, precision: str | None = None) -> ModelBundle:
    """The untrained models of ``config.model`` for ``config.image_shape``, their layers
    in the dtype policy ``precision`` (default: the config's)."""
    with dtype_policy(precision or config.precision):
        return get(config.model).build(config)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Layers created inside take the Keras dtype policy ``name`` (float32, mixed_bfloat16,
    mixed_float16). The layers that compute losses (``Sampling``, ``ReconstructionLoss``)
    and the decoders' outputs fix their own float32 policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def in_float32(config, models: ModelBundle) -> ModelBundle:
    """``models`` trained in a mixed precision, as float32 models with the same weights:
    what is evaluated, saved and exported (16-bit compute is for training speed)."""
    if config.precision == "float32":
        return models
    copy = build(config, precision="float32")
    copy.whole.set_weights(models.whole.get_weights())
    return copy


def load_bundle(config, directory: str | Path) -> ModelBundle:
    """The saved models of a run directory as the family's bundle."""
    return get(config.model).bundle_type.load(directory)
