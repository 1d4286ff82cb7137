"""What a model family is, and the registry every other module looks families up in.

A :class:`Family` declares everything that differs between families: how to build its
models from a config, its presets (``default`` = the book's recipe, ``tiny`` = seconds on
a CPU), the config fields it reads beyond the common ones, its checks, its extra metrics
and figures, whether it is variational, and its speed defaults. Nothing outside
``hml_vae.families`` branches on a family's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hml_vae.config import Config
    from hml_vae.families.bundle import ModelBundle

# The figures every family draws (hml_vae.plots draws each by name).
COMMON_FIGURES = ("reconstructions", "latent_map", "interpolation", "training_curves")


def _nothing(*args) -> dict:
    return {}


def _no_callbacks(config: Config) -> list:
    return []


def _no_check(config: Config) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the ``--model`` value.
        summary: one line for ``--help`` and the README.
        build: ``config -> ModelBundle``, untrained, for ``config.image_shape``.
        presets: {preset name: config values}; ``default`` is the book's recipe.
        options: config fields this family reads besides the common ones (a family
            option of another family that differs from its default is an error).
        variational: a VAE (its bundle has ``generate``, ``posterior``,
            ``log_likelihood``; evaluation reports nats per image).
        xla: compile the training step with XLA by default (measured faster on CPU:
            benchmarks/results/xla_by_family.md).
        bfloat16: train in ``mixed_bfloat16`` by default where the CPU computes bfloat16
            natively (measured faster than float32 with the book's losses within seed
            noise: benchmarks/results/vs_pytorch.md, homl_zoo_mixed_bfloat16.md).
        loss: the compiled loss, or None when the model's layers add it (``add_loss``).
        check: raises ValueError for a config the family cannot build (sizes that do not
            fit the image shape, ...). ``config.image_shape`` may still be None.
        fill: values the family derives once the image shape is known (``config ->
            {field: value}`` for fields that are still None).
        describe: ``config -> str``: the architecture in one line (what shape adaptation
            it made), printed when training starts.
        callbacks: ``config -> [keras callbacks]`` for ``fit`` (β warm-up, ...).
        metrics: ``(config, bundle, test images) -> {name: number}``: the family's own
            numbers beside the common ones (hml_vae.evaluation.evaluate calls it).
        label_metrics: ``(config, bundle, test images, test labels) -> {name: number}``:
            the family's numbers that need the classes (hashing's bucket purity); called
            when the test split has labels.
        figures: names of the figures it draws (see hml_vae.plots.FIGURES).
        corrupt: ``(config, images) -> noisy images``: a denoising family's training
            corruption, drawn once with the config's seed.
        train: a training procedure of its own (greedy layer-wise pretraining) instead of
            one ``fit`` of the whole model; see hml_vae.training.
        needs_memory: its training procedure holds every training image in memory (so it
            cannot run on a streamed data set).
        bundle_type: the :class:`ModelBundle` subclass its runs load as.
    """

    name: str
    summary: str
    build: Callable[[Config], ModelBundle]
    presets: dict[str, dict[str, Any]]
    bundle_type: type
    options: tuple[str, ...] = ()
    variational: bool = False
    xla: bool = False
    bfloat16: bool = False
    loss: str | None = "mse"
    check: Callable[[Config], None] = _no_check
    fill: Callable[[Config], dict] = _nothing
    describe: Callable[[Config], str] = lambda config: ""
    callbacks: Callable[[Config], list] = _no_callbacks
    metrics: Callable[..., dict] = _nothing
    label_metrics: Callable[..., dict] = _nothing
    figures: tuple[str, ...] = COMMON_FIGURES
    corrupt: Callable | None = None
    train: Callable | None = None
    needs_memory: bool = False


_REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Adds ``family`` to the registry (each family module calls this once)."""
    if family.name in _REGISTRY:
        raise ValueError(f"a family named {family.name!r} is already registered.")
    if "default" not in family.presets:
        raise ValueError(f"family {family.name!r} has no 'default' preset.")
    _REGISTRY[family.name] = family
    return family


def names() -> tuple[str, ...]:
    """Every registered family's name, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> Family:
    """The family called ``name``; ValueError listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of: "
                         f"{', '.join(_REGISTRY)}.") from None


def families_with_option(field: str) -> tuple[str, ...]:
    """The families that read the config field ``field``."""
    return tuple(name for name, family in _REGISTRY.items() if field in family.options)


def presets() -> tuple[str, ...]:
    """Every preset name some family has (``default`` first)."""
    found = dict.fromkeys(["default"])
    for family in _REGISTRY.values():
        found.update(dict.fromkeys(family.presets))
    return tuple(found)
