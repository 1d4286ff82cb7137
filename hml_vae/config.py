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

MODELS = ("stacked", "vae", "conv_vae")
VAE_MODELS = ("vae", "conv_vae")
LIKELIHOODS = ("bernoulli", "gaussian")
LEARNED_SIGMA = ("none", "global", "pixel")
PRESETS = ("default", "tiny")
STRATEGIES = ("default",)
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
    strategy: str = "default"
    # Architecture: hidden layer sizes of the encoder (the decoder mirrors them) and the
    # size of the coding (the latent space for VAEs).
    hidden: tuple[int, ...] = (100,)
    latent_dim: int = 30
    # Optimisation.
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "nadam"
    learning_rate: float = 1e-3
    early_stopping_patience: int | None = None  # None: train every epoch
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
    if value is None or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")


def validate(config: Config) -> None:
    """Raises ValueError for any value no run could use, before anything is trained."""
    _check_choice("model", config.model, MODELS)
    _check_choice("dataset", config.dataset, DATASETS)
    _check_choice("binarization", config.binarize, BINARIZATIONS)
    _check_choice("strategy", config.strategy, STRATEGIES)
    _check_choice("optimizer", config.optimizer, OPTIMIZERS)
    for name in ("epochs", "batch_size", "latent_dim", "learning_rate"):
        _check_positive(name.replace("_", " "), getattr(config, name))
    _check_positive("limit", config.limit, allow_none=True)
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


# Per model family: the preset's values. ``default`` is HOML's recipe (3rd edition,
# ch. 17: 784-100-30-100-784, ReLU, MSE, Nadam, 20 epochs, Keras' default batch of 32);
# ``tiny`` trains in seconds on a CPU for tests and smoke runs.
_PRESET_VALUES: dict[str, dict[str, dict]] = {
    "stacked": {
        "default": {},
        "tiny": {"hidden": (16,), "latent_dim": 8, "epochs": 1, "batch_size": 64},
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
