"""Typed run configuration with named presets (``default`` = HOML's recipe, ``tiny`` = tests).

A :class:`Config` is everything needed to rebuild a run: it is saved as ``config.json`` in
every run directory and read back by evaluation, plotting and export.

Example:
    >>> config = make_config("stacked", preset="tiny", epochs=2)
    >>> config.hidden, config.latent_dim
    ((16,), 8)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hml_vae.data import BINARIZATIONS, DATASETS

MODELS = ("stacked", "tied", "conv", "recurrent", "denoising", "sparse", "greedy", "vae",
          "conv_vae")
VAE_MODELS = ("vae", "conv_vae")
LIKELIHOODS = ("bernoulli", "gaussian")
LEARNED_SIGMA = ("none", "global", "pixel")
# Dense autoencoders that must narrow at every layer (784 -> hidden... -> latent_dim).
UNDERCOMPLETE_DENSE_MODELS = ("stacked", "tied", "denoising", "greedy")
PIXELS = 28 * 28
NOISE_KINDS = ("gaussian", "dropout")
SPARSITY_KINDS = ("kl", "l1")
# HOML's weights for the two sparsity penalties (see _PRESET_VALUES["sparse"]); used when
# sparsity_weight is not given.
DEFAULT_SPARSITY_WEIGHTS = {"kl": 0.05, "l1": 1e-4}
MAX_CONV_BLOCKS = 3  # 28 -> 14 -> 7 -> 3 pixels; see hml_vae.models.autoencoders
PRESETS = ("default", "tiny")
# Families whose training step runs faster compiled by XLA on CPU
# (benchmarks/results/xla_by_family.md: 1.1-2.5x the images/s; recurrent 1.0-1.95x over
# three runs; greedy trains stacked levels). Not denoising: XLA's stateless random numbers
# (Keras' Dropout and GaussianNoise masks) make its step ~5x slower; conv is ~2x slower,
# conv_vae 0.5-1.0x.
XLA_FAMILIES = ("stacked", "tied", "sparse", "greedy", "vae", "recurrent")
# tf.distribute strategies (see hml_vae.distribute): auto picks multi_worker when TF_CONFIG
# describes a cluster, mirrored when there are several GPUs or --cpu-replicas > 1.
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
OPTIMIZERS = ("nadam", "adam", "sgd")


@dataclasses.dataclass(frozen=True)
class Config:
    """One training run. Field names match the CLI flags (``--latent-dim`` -> latent_dim)."""

    model: str = "stacked"
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    download: bool = False
    limit: int | None = None
    binarize: str = "none"
    seed: int = 42
    # How to train, not what: neither changes the model, and a run interrupted under one
    # strategy may be resumed under another. ``batch_size`` is the global batch, split
    # across replicas. ``cpu_replicas`` splits the CPU into that many logical devices so
    # ``mirrored`` can be tried without GPUs.
    strategy: str = "default"
    cpu_replicas: int = 1
    # Architecture: hidden layer sizes of the encoder (the decoder mirrors them) and the
    # size of the coding (the latent space for VAEs). For ``conv`` the hidden sizes are
    # the filters of the conv+pooling blocks, for ``recurrent`` the LSTM units; for
    # ``greedy`` (hidden..., latent_dim) are the codings of the pretrained levels.
    hidden: tuple[int, ...] = (100,)
    latent_dim: int = 30
    # Denoising: the input corruption, used in training only.
    noise: str = "dropout"
    noise_stddev: float = 0.2
    dropout_rate: float = 0.5
    # Sparse: the coding's activity penalty; sparsity_weight None means HOML's weight for
    # the chosen kind (DEFAULT_SPARSITY_WEIGHTS), filled in when the config is made.
    sparsity: str = "kl"
    sparsity_target: float = 0.1
    sparsity_weight: float | None = None
    # Greedy layer-wise pretraining: ``epochs`` trains each level, then the stacked model
    # is fine-tuned end to end for this many epochs (0: no fine-tuning).
    fine_tune_epochs: int = 0
    # Optimisation.
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "nadam"
    learning_rate: float = 1e-3
    early_stopping_patience: int | None = None  # None: train every epoch
    # Speed (benchmarks/throughput.py): training steps per call into the compiled graph
    # (fewer Python round trips; ~1.2x the images/s of 1 on 2 CPU cores for the dense
    # VAE), and XLA compilation of the step: None takes the family's measured choice
    # (XLA_FAMILIES), True/False force it.
    steps_per_execution: int = 32
    jit_compile: bool | None = None
    make_plots: bool = True
    # Variational autoencoders (ignored by the other families). The decoder's likelihood:
    # bernoulli (logits; numbers are likelihoods on binary images) or gaussian (means,
    # with a fixed gaussian_sigma, or learned: one global or one per pixel, starting there).
    likelihood: str = "bernoulli"
    gaussian_sigma: float = 1.0
    learned_sigma: str = "none"
    beta: float = 1.0  # weight of the KL term; 1 is the ELBO
    warmup_epochs: int = 0  # epochs of linear β warm-up from 0 (0: none)
    free_bits: float = 0.0  # nats per latent dimension (0: none)
    iwae_samples: int = 100  # K of the importance-weighted log p(x) in metrics.json

    def __post_init__(self) -> None:
        # JSON has no tuples: accept lists so a saved config round-trips.
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.sparsity_weight is None and self.sparsity in DEFAULT_SPARSITY_WEIGHTS:
            object.__setattr__(self, "sparsity_weight", DEFAULT_SPARSITY_WEIGHTS[self.sparsity])
        validate(self)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Config:
        values = json.loads(Path(path).read_text())
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{path}: unknown config keys {unknown}; this run was written by another "
                f"version of hml_vae. Known keys: {sorted(known)}."
            )
        return cls(**values)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(choices)}.")


def _check_positive(name: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:  # "not >" also rejects NaN
        raise ValueError(f"{name} must be a positive number, got {value!r}.")


def validate(config: Config) -> None:
    """Raises ValueError for any value no run could use, before anything is trained."""
    _check_choice("model", config.model, MODELS)
    _check_choice("dataset", config.dataset, DATASETS)
    _check_choice("binarization", config.binarize, BINARIZATIONS)
    _check_choice("strategy", config.strategy, STRATEGIES)
    _check_choice("optimizer", config.optimizer, OPTIMIZERS)
    if config.jit_compile not in (None, True, False):
        raise ValueError(f"jit_compile must be true, false or null (the family's choice), got "
                         f"{config.jit_compile!r}.")
    for name in ("epochs", "batch_size", "latent_dim", "learning_rate", "steps_per_execution"):
        _check_positive(name.replace("_", " "), getattr(config, name))
    _check_positive("limit", config.limit, allow_none=True)
    if isinstance(config.cpu_replicas, bool) or not (
        isinstance(config.cpu_replicas, int) and config.cpu_replicas >= 1
    ):
        raise ValueError(
            f"cpu replicas must be a whole number >= 1, got {config.cpu_replicas!r}; "
            f"--cpu-replicas 2 splits the CPU into two devices for --strategy mirrored."
        )
    _check_positive("early stopping patience", config.early_stopping_patience, allow_none=True)
    _check_choice("likelihood", config.likelihood, LIKELIHOODS)
    _check_choice("learned sigma", config.learned_sigma, LEARNED_SIGMA)
    _check_positive("gaussian sigma", config.gaussian_sigma)
    _check_positive("iwae samples (K)", config.iwae_samples)
    for name in ("beta", "warmup_epochs", "free_bits"):
        value = getattr(config, name)
        if value is None or not value >= 0:
            raise ValueError(
                f"{name.replace('_', ' ')} must be >= 0, got {value!r} (0 turns it off"
                f"{'; 1 is the ELBO' if name == 'beta' else ''})."
            )
    if not config.hidden or any(
        not isinstance(size, int) or size <= 0 for size in config.hidden
    ):
        raise ValueError(
            f"hidden layer sizes must be positive integers, got {list(config.hidden)}; "
            f"e.g. --hidden 100 or --hidden 150,100."
        )
    if isinstance(config.fine_tune_epochs, bool) or not (
        isinstance(config.fine_tune_epochs, int) and config.fine_tune_epochs >= 0
    ):
        raise ValueError(
            f"fine-tune epochs must be a whole number >= 0, got {config.fine_tune_epochs!r}."
        )
    _validate_architecture(config)
    _validate_denoising(config)
    _validate_sparsity(config)


def _validate_architecture(config: Config) -> None:
    """Sizes the model family can be built with (the builders check them again; here they
    fail before TensorFlow is imported and data is loaded)."""
    if config.model in UNDERCOMPLETE_DENSE_MODELS:
        inputs = PIXELS
        for size in (*config.hidden, config.latent_dim):
            if size > inputs:
                raise ValueError(
                    f"{config.model}: a layer of {size} units after {inputs} inputs; an "
                    f"undercomplete autoencoder narrows at every layer. Use sizes that "
                    f"decrease from {PIXELS}, e.g. --hidden 100 --latent-dim 30."
                )
            inputs = size
    if config.model in ("conv", "recurrent") and config.latent_dim >= PIXELS:
        raise ValueError(
            f"{config.model}: a coding of {config.latent_dim} units is not smaller than the "
            f"{PIXELS} pixels it encodes; pass --latent-dim below {PIXELS}, e.g. 30."
        )
    if config.model == "conv" and len(config.hidden) > MAX_CONV_BLOCKS:
        raise ValueError(
            f"conv: {len(config.hidden)} conv+pooling blocks (--hidden "
            f"{','.join(map(str, config.hidden))}) do not fit a 28x28 image; at most "
            f"{MAX_CONV_BLOCKS}, e.g. --hidden 16,32,64."
        )


def _validate_denoising(config: Config) -> None:
    _check_choice("noise", config.noise, NOISE_KINDS)
    _check_positive("noise stddev", config.noise_stddev)
    if not 0 < config.dropout_rate < 1:
        raise ValueError(
            f"dropout rate is the probability of zeroing a pixel and must lie in (0, 1), got "
            f"{config.dropout_rate!r}; e.g. --dropout-rate 0.5."
        )


def _validate_sparsity(config: Config) -> None:
    _check_choice("sparsity", config.sparsity, SPARSITY_KINDS)
    if not 0 < config.sparsity_target < 1:
        raise ValueError(
            f"sparsity target is the wanted mean activation of a sigmoid coding unit and "
            f"must lie in (0, 1), got {config.sparsity_target!r}; e.g. --sparsity-target 0.1."
        )
    _check_positive("sparsity weight", config.sparsity_weight)


# Per model family: the preset's values. ``default`` is HOML's recipe (3rd edition,
# ch. 17: 784-100-30-100-784, ReLU, MSE, Nadam, 20 epochs, Keras' default batch of 32);
# ``tiny`` trains in seconds on a CPU for tests and smoke runs.
_TINY_DENSE = {"hidden": (16,), "latent_dim": 8, "epochs": 1, "batch_size": 64}
_PRESET_VALUES: dict[str, dict[str, dict]] = {
    "stacked": {"default": {}, "tiny": _TINY_DENSE},
    # HOML: the stacked model with the transposed kernels in the decoder.
    "tied": {"default": {}, "tiny": _TINY_DENSE},
    # HOML 3rd ed.: Conv2D 16, 32, 64 (3x3, "same", ReLU) each with 2x2 max pooling down to
    # 3x3x64, a Conv2D of 30 filters + global average pooling as the 30-unit coding, and
    # Conv2DTranspose 32, 16, 1 (stride 2) back to 28x28.
    "conv": {
        "default": {"hidden": (16, 32, 64), "latent_dim": 30},
        "tiny": {"hidden": (4, 8, 8), "latent_dim": 8, "epochs": 1, "batch_size": 64},
    },
    # HOML 3rd ed.: LSTM(100) -> LSTM(30) over the 28 rows; RepeatVector(28) -> LSTM(100)
    # -> Dense(28) on every row.
    "recurrent": {
        "default": {"hidden": (100,), "latent_dim": 30},
        "tiny": {"hidden": (8,), "latent_dim": 4, "epochs": 1, "batch_size": 64},
    },
    # HOML 3rd ed.: the stacked 100-30 model with Dropout(0.5) on its inputs; its Gaussian
    # variant uses GaussianNoise(0.2) (--noise gaussian).
    "denoising": {
        "default": {"noise": "dropout", "dropout_rate": 0.5, "noise_stddev": 0.2},
        "tiny": {**_TINY_DENSE, "noise": "dropout", "dropout_rate": 0.5},
    },
    # HOML ch. 17's sparse autoencoder: Dense(100, ReLU) then a 300-unit sigmoid coding
    # with the KL sparsity penalty, target 0.1, weight 0.05 (HOML's KL weight differs
    # between editions; 0.05 is the one we use); the L1 variant uses 1e-4. Keras 3 divides
    # activity penalties by the batch size as tf.keras 2 did, so HOML's weights keep their
    # strength.
    "sparse": {
        "default": {"hidden": (100,), "latent_dim": 300, "sparsity": "kl",
                    "sparsity_target": 0.1},
        "tiny": {"hidden": (16,), "latent_dim": 32, "epochs": 1, "batch_size": 64},
    },
    # Greedy layer-wise pretraining of the stacked 100-30 model: each level trains like the
    # stacked model (20 epochs); fine-tuning the stack is optional (--fine-tune-epochs).
    "greedy": {
        "default": {"fine_tune_epochs": 0},
        "tiny": {**_TINY_DENSE, "fine_tune_epochs": 1},
    },
    # HOML 3rd ed. ch. 17's VAE: 784-150-100-10 codings, ReLU, Nadam, 25 epochs, batch 128.
    # HOML trains it on gray pixels with MSE + KL/784 (a Gaussian decoder with σ² = 1/2, up
    # to scale); here the default is a Bernoulli decoder trained on dynamically binarized
    # images, so that the reported numbers are log-likelihoods (DESIGN.md). Pass
    # --likelihood gaussian --binarize none --gaussian-sigma 0.7071 for HOML's objective.
    "vae": {
        "default": {"hidden": (150, 100), "latent_dim": 10, "epochs": 25, "batch_size": 128,
                    "binarize": "dynamic"},
        "tiny": {"hidden": (16,), "latent_dim": 4, "epochs": 1, "batch_size": 64,
                 "binarize": "dynamic", "iwae_samples": 8},
    },
    "conv_vae": {
        "default": {"hidden": (32, 64), "latent_dim": 10, "epochs": 25, "batch_size": 128,
                    "binarize": "dynamic"},
        "tiny": {"hidden": (4, 8), "latent_dim": 4, "epochs": 1, "batch_size": 64,
                 "binarize": "dynamic", "iwae_samples": 8},
    },
}


def make_config(model: str = "stacked", preset: str = "default", **overrides) -> Config:
    """The preset's config for ``model`` with ``overrides`` applied (None means "keep")."""
    _check_choice("model", model, MODELS)
    _check_choice("preset", preset, PRESETS)
    values = dict(_PRESET_VALUES[model][preset])
    values.update({key: value for key, value in overrides.items() if value is not None})
    return Config(model=model, **values)
