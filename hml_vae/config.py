"""Typed run configuration: the one source of every default, help text and choice.

A :class:`Config` is everything needed to rebuild a run: it is saved as ``config.json`` in
every run directory and read back by evaluation, plotting and export. The command-line
flags of ``scripts/train.py`` are generated from its fields (:mod:`hml_vae.cli`), so a
field's default and help live only here; a family's presets (``default`` = the book's
recipe, ``tiny`` = seconds on a CPU) live in its module under :mod:`hml_vae.families`.

Fields marked ``family_option`` belong to some families only (``beta`` to the VAEs,
``noise`` to denoising, ...): set for another family, they are an error.

Example:
    >>> config = make_config("stacked", preset="tiny", epochs=2)
    >>> config.hidden, config.latent_dim
    ((16,), 8)
    >>> config = config.for_images((32, 32, 3))   # bound to a data set's image shape
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import types
import typing
from pathlib import Path

from hml_vae import families
from hml_vae.data import BINARIZATIONS, COLORS, STREAMING
from hml_vae.errors import ConfigError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
OPTIMIZERS = ("nadam", "adam", "sgd")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
MIN_IMAGE_SIDE = 8


@functools.cache
def native_bfloat16_cpu() -> bool:
    """Whether this machine's CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16 in
    Linux's /proc/cpuinfo). GPUs are not considered: bfloat16 was measured on CPU only."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def option(default, help: str, choices=None, family_option: bool = False,
           flag: str | None = None, cli: bool = True, **extra):
    """A config field with what the CLI and the docs need to know about it.

    Args:
        default: the one default of this setting.
        help: what it does (the CLI appends the default).
        choices: allowed values (a tuple, or a callable returning one).
        family_option: read by some families only (see Family.options).
        flag: the CLI flag when it is not ``--field-name``.
        cli: False for fields the run derives (``image_shape``).
        extra: ``none`` (what a None default means, for --help), ``positive`` /
            ``non_negative`` (numbers that must be), ``between`` (an open interval).
    """
    metadata = {"help": help, "choices": choices, "family_option": family_option,
                "flag": flag, "cli": cli, **extra}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Config:
    """One training run. Field names match the CLI flags (``--latent-dim`` -> latent_dim)."""

    model: str = option("stacked", "model family", choices=families.names)
    # --- Data ---------------------------------------------------------------------------
    dataset: str = option("fashion_mnist", "data set: fashion_mnist or mnist (IDX files), or "
                          "any image data set of tensorflow-datasets by name, e.g. cifar10")
    data_dir: str | None = option(None, "directory with the four IDX files (overrides "
                                  "HML_VAE_DATA_DIR and the installed data set)",
                                  none="HML_VAE_DATA_DIR, then the installed data set")
    download: bool = option(False, "let tensorflow-datasets download the data (needs network)")
    images: str | None = option(None, "a folder of images (class subfolders become labels) "
                                "instead of --dataset", none="none")
    npz: str | None = option(None, "an .npz file with 'images' (N, H, W[, C]) and optionally "
                             "'labels', instead of --dataset")
    image_size: tuple[int, int] | None = option(
        None, "resize the folder's images to H,W (needed when their sizes differ)",
        none="their own size")
    color: str | None = option(None, "read the folder's images as grayscale or rgb",
                               choices=COLORS, none="as stored")
    streaming: str = option("auto", "memory: load the images into memory; stream: read them "
                            "from their files batch by batch; auto: stream when they would "
                            "not fit", choices=STREAMING)
    limit: int | None = option(None, "train on the first N images (and proportionally fewer "
                               "validation/test images)", positive=True, none="all")
    binarize: str | None = option(None, "binarize pixels: none, static (drawn once) or dynamic "
                                  "(redrawn every epoch)", choices=BINARIZATIONS,
                                  none="dynamic for Bernoulli VAEs, none otherwise")
    image_shape: tuple[int, ...] | None = option(
        None, "(H, W, C) of the run's images, set from the data set", cli=False)
    seed: int = option(42, "random seed of weights, shuffling, noise and sampling")
    # --- How to train, not what: a run interrupted under one strategy may resume under
    # another. ``batch_size`` is the global batch, split across replicas.
    strategy: str = option("default", "tf.distribute strategy: auto (multi_worker under a "
                           "TF_CONFIG cluster, mirrored with several GPUs or --cpu-replicas), "
                           "default, mirrored, multi_worker", choices=STRATEGIES)
    cpu_replicas: int = option(1, "split the CPU into N logical devices for --strategy "
                               "mirrored", positive=True)
    cluster_timeout: float = option(300.0, "seconds a --strategy multi_worker process waits "
                                    "for the other workers of its TF_CONFIG cluster to "
                                    "start before it fails", positive=True)
    # --- Architecture ---------------------------------------------------------------------
    hidden: tuple[int, ...] = option(
        (100,), "encoder hidden sizes, e.g. 100 or 150,100 (the decoder mirrors them); conv "
        "families: filters per stride-2 block, e.g. 16,32,64; recurrent: LSTM units; greedy: "
        "the codings of every level but the last")
    latent_dim: int = option(30, "size of the coding (the latent space of VAEs)", positive=True)
    noise: str = option("dropout", "input corruption in training", choices=("dropout",
                        "gaussian"), family_option=True)
    noise_stddev: float = option(0.2, "standard deviation of --noise gaussian (denoising), or "
                                 "of the noise before the coding (hashing)",
                                 family_option=True, positive=True)
    dropout_rate: float = option(0.5, "share of pixels --noise dropout zeroes",
                                 family_option=True, between=(0, 1))
    sparsity: str = option("kl", "activity penalty of the coding: kl (mean activation pulled "
                           "to --sparsity-target) or l1", choices=("kl", "l1"),
                           family_option=True)
    sparsity_target: float = option(0.1, "wanted mean activation of a coding unit",
                                    family_option=True, between=(0, 1))
    sparsity_weight: float | None = option(None, "penalty weight", family_option=True,
                                           positive=True, none="HOML's: 5e-3 for kl, 1e-4 "
                                           "for l1")
    fine_tune_epochs: int = option(0, "epochs of end-to-end training after stacking the "
                                   "levels (0: none)", family_option=True, non_negative=True)
    level_learning_rates: tuple[float, ...] | None = option(
        None, "learning rate of each greedy level, e.g. 5e-4,5e-3 (levels beyond the list use "
        "its last; --learning-rate then applies to fine-tuning)", family_option=True,
        none="--learning-rate for every level")
    # --- Optimisation ---------------------------------------------------------------------
    epochs: int = option(20, "training epochs (greedy: of each level)", positive=True)
    batch_size: int = option(32, "images per step (the global batch under a strategy)",
                             positive=True)
    optimizer: str = option("nadam", "optimizer", choices=OPTIMIZERS)
    learning_rate: float = option(1e-3, "learning rate", positive=True)
    early_stopping_patience: int | None = option(
        None, "stop after N epochs without a lower validation loss", flag="--patience",
        positive=True, none="train every epoch")
    # Speed (benchmarks/throughput.py): fewer Python round trips per step, and XLA.
    steps_per_execution: int = option(32, "at least this many training steps per call into "
                                      "the compiled graph: the smallest divisor of an epoch's "
                                      "steps from N up (1 is Keras' default)", positive=True)
    jit_compile: bool | None = option(None, "compile the training step with XLA",
                                      none="the family's measured choice")
    precision: str | None = option(
        None, "Keras dtype policy of training: mixed_* compute in 16 bits with float32 "
        "weights; likelihoods, KL and every reported metric stay float32",
        choices=PRECISIONS, none="mixed_bfloat16 for the families measured faster in it "
        "(conv) on a CPU with native bfloat16, float32 otherwise")
    make_plots: bool = option(True, "draw the figures (scripts/plot.py draws them later)",
                              flag="--plots")
    # --- Variational autoencoders ---------------------------------------------------------
    likelihood: str | None = option(
        None, "the decoder's likelihood: bernoulli (logits) or gaussian (means)",
        choices=("bernoulli", "gaussian"), family_option=True,
        none="bernoulli for grayscale images, gaussian for colour")
    gaussian_sigma: float = option(1.0, "σ of a Gaussian decoder, or the start of a learned "
                                   "σ (1: the σ = 1 case of docs/vae.md)", family_option=True,
                                   positive=True)
    learned_sigma: str = option("none", "learn the Gaussian decoder's σ: none, global or per "
                                "pixel", choices=("none", "global", "pixel"),
                                family_option=True)
    beta: float = option(1.0, "weight of the KL term (1: the ELBO)", family_option=True,
                         non_negative=True)
    warmup_epochs: int = option(0, "raise β linearly from 0 over N epochs (0: no warm-up)",
                                family_option=True, non_negative=True)
    free_bits: float = option(0.0, "free bits λ in nats per latent dimension (0: none)",
                              family_option=True, non_negative=True)
    iwae_samples: int = option(100, "K of the importance-weighted log p(x) in metrics.json",
                               family_option=True, positive=True)

    def __post_init__(self) -> None:
        # JSON has no tuples: accept lists so a saved config round-trips.
        for name in ("hidden", "image_shape", "image_size", "level_learning_rates"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        check_types(self)  # before the family reads any value
        if self.model not in families.names():
            raise ConfigError(f"unknown model {self.model!r}; expected one of: "
                              f"{', '.join(families.names())}.", flag="--model")
        family = self.family
        try:
            filled = family.fill(self)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        for name, value in filled.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.binarize is None and self.image_shape is not None:
            object.__setattr__(self, "binarize", "none")
        if self.precision is None:
            object.__setattr__(self, "precision", "mixed_bfloat16" if family.bfloat16
                               and native_bfloat16_cpu() else "float32")
        validate(self)

    @property
    def family(self) -> families.Family:
        return families.get(self.model)  # check_types and validate vouch for the name

    def for_images(self, image_shape) -> Config:
        """This config bound to images of ``image_shape`` (H, W, C): the family fills in
        what depends on it and checks that its sizes fit."""
        return dataclasses.replace(self, image_shape=tuple(int(size) for size in image_shape))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """The config saved at ``path``.

        Raises:
            ConfigError: naming the file, when it cannot be read or is no valid config.
        """
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except OSError as error:
            raise ConfigError(f"{path}: cannot read it ({error.strerror or error}).",
                              path=path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: not valid JSON ({' '.join(str(error).split())}); it "
                              f"is not an hml_vae config.json.", path=path) from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of config fields.", path=path)
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown config keys {unknown}; this run was written by another "
                f"version of hml_vae. Known keys: {sorted(known)}.", path=path)
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}", path=path, flag=error.flag) from None


def fields() -> tuple[dataclasses.Field, ...]:
    """The config's fields, in declaration order."""
    return dataclasses.fields(Config)


def field_choices(field: dataclasses.Field) -> tuple | None:
    choices = field.metadata.get("choices")
    return choices() if callable(choices) else choices


def _label(name: str) -> str:
    return name.replace("_", " ")


def _key(field: dataclasses.Field) -> str:
    """What names a field for the user: its flag, or its config.json key if it has none."""
    return flag_name(field) if field.metadata.get("cli", True) else field.name


def _is_whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _has_type(value, annotation) -> bool:
    """Whether ``value`` (as read from JSON or given in Python) fits ``annotation``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_has_type(value, member) for member in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_whole(value)
    if annotation is float:  # JSON writes 1.0 as 1
        return _is_whole(value) or isinstance(value, numbers.Real) and not isinstance(
            value, bool)
    if annotation is str:
        return isinstance(value, str)
    if typing.get_origin(annotation) is tuple:
        members = typing.get_args(annotation)
        if not isinstance(value, tuple) or not all(_has_type(item, members[0])
                                                   for item in value):
            return False
        return members[-1] is Ellipsis or len(value) == len(members)
    raise TypeError(f"no type check for {annotation}")  # a new kind of field


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
               type(None): "null"}


def _type_text(annotation) -> str:
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else (annotation,)
    return " or ".join(_TYPE_NAMES.get(member) or _list_text(member) for member in members)


def _list_text(annotation) -> str:
    """tuple[int, ...] -> 'a list of whole numbers', tuple[float, ...] -> 'a list of
    numbers'."""
    item = typing.get_args(annotation)[0]
    return "a list of " + {int: "whole numbers", float: "numbers"}[item]


def check_types(config: Config) -> None:
    """Raises ConfigError naming the first field whose value has the wrong type (a string
    for a number, a list of floats for layer sizes, ...)."""
    hints = typing.get_type_hints(Config)
    for field in fields():
        value = getattr(config, field.name)
        if not _has_type(value, hints[field.name]):
            raise ConfigError(f"{_label(field.name)} must be {_type_text(hints[field.name])}, "
                              f"got {value!r}.", flag=_key(field))


def _positive(value) -> bool:
    """``value > 0`` and finite (a whole number may exceed what a float holds)."""
    return value > 0 and (_is_whole(value) or math.isfinite(value))


def _non_negative(value) -> bool:
    return value >= 0 and (_is_whole(value) or math.isfinite(value))


def validate(config: Config) -> None:
    """Raises ConfigError, naming the flag, for any value no run could use, before
    anything is trained."""
    check_types(config)
    for field in fields():
        value = getattr(config, field.name)
        choices = field_choices(field)
        if choices is not None and value is not None and value not in choices:
            raise ConfigError(f"unknown {_label(field.name)} {value!r}; expected one of: "
                              f"{', '.join(map(str, choices))}.", flag=_key(field))
        if value is None or isinstance(value, bool):
            continue
        if field.metadata.get("positive") and not _positive(value):
            raise ConfigError(f"{_label(field.name)} must be a positive number, got "
                              f"{value!r}.", flag=_key(field))
        if field.metadata.get("non_negative") and not _non_negative(value):
            raise ConfigError(f"{_label(field.name)} must be >= 0, got {value!r} (0 turns it "
                              f"off).", flag=_key(field))
        between = field.metadata.get("between")
        if between and not between[0] < value < between[1]:
            low, high = between
            raise ConfigError(f"{_label(field.name)} must lie in ({low}, {high}), got "
                              f"{value!r}; e.g. {flag_name(field)} {field.default}.",
                              flag=_key(field))
    if not config.hidden or any(size <= 0 for size in config.hidden):
        raise ConfigError(f"hidden layer sizes must be positive integers, got "
                          f"{list(config.hidden)}; e.g. --hidden 100 or --hidden 150,100.",
                          flag="--hidden")
    if not config.dataset.strip():
        raise ConfigError(f"dataset must be a data set name such as fashion_mnist or "
                          f"cifar10, got {config.dataset!r}.", flag="--dataset")
    if config.images is not None and config.npz is not None:
        raise ConfigError("--images and --npz name two data sources; pass one of them.",
                          flag="--images")
    _validate_sizes(config)
    _validate_family_options(config)
    try:
        config.family.check(config)
    except ConfigError:
        raise
    except ValueError as error:  # the family's own checks (sizes against the images)
        raise ConfigError(str(error)) from None


def _validate_sizes(config: Config) -> None:
    if config.image_size is not None:
        size = config.image_size
        if min(size) < MIN_IMAGE_SIDE:
            raise ConfigError(f"image size must be two whole numbers H,W of at least "
                              f"{MIN_IMAGE_SIDE}, got {size!r}; e.g. --image-size 32,32.",
                              flag="--image-size")
    if config.image_shape is not None:
        shape = config.image_shape
        if len(shape) != 3 or min(shape[:2]) < MIN_IMAGE_SIDE or shape[2] not in (1, 3):
            raise ConfigError(
                f"image shape must be (H, W, C) with H, W >= {MIN_IMAGE_SIDE} and C = 1 "
                f"(grayscale) or 3 (colour), got {shape!r}."
            )


def _validate_family_options(config: Config) -> None:
    """A setting that belongs to other families must keep its default: silently saving
    ``--beta 2`` for a stacked autoencoder would mislead whoever reads the run."""
    family = config.family
    for field in fields():
        if not field.metadata.get("family_option") or field.name in family.options:
            continue
        if getattr(config, field.name) != field.default:
            owners = families.families_with_option(field.name)
            raise ConfigError(
                f"{flag_name(field)} does not apply to --model {config.model}; it is an "
                f"option of {', '.join(owners)}. Leave it out.", flag=flag_name(field))


def flag_name(field: dataclasses.Field) -> str:
    """The CLI flag of a config field (``latent_dim`` -> ``--latent-dim``)."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def make_config(model: str = "stacked", preset: str = "default", base: Config | None = None,
                **overrides) -> Config:
    """The config for ``model``: its preset's values (or ``base``'s, a saved config to run
    again), then ``overrides`` (None means "keep").

    Raises:
        ConfigError: an unknown model or preset, or values no run could use.
    """
    try:
        family = families.get(model)
    except (ValueError, TypeError):  # TypeError: a name that is not even a string
        raise ConfigError(f"unknown model {model!r}; expected one of: "
                          f"{', '.join(families.names())}.", flag="--model") from None
    if preset not in family.presets:
        raise ConfigError(f"unknown preset {preset!r} for {model}; expected one of: "
                          f"{', '.join(family.presets)}.", flag="--preset")
    if base is not None:
        if base.model != model:
            raise ConfigError(f"the saved config is for --model {base.model}, not {model}; "
                              f"leave out --model or pass a config of {model}.",
                              flag="--model")
        values = base.to_dict()
        values.pop("model")
        values["image_shape"] = None  # set again from the data, which flags may change
    else:
        values = dict(family.presets[preset])
    values.update({key: value for key, value in overrides.items() if value is not None})
    return Config(model=model, **values)
