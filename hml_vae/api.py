"""The notebook API: train a model, load a finished run, evaluate or plot it again.

Example (in a notebook):
    >>> import hml_vae
    >>> run = hml_vae.train("vae", preset="tiny", output="runs/vae-tiny", limit=2000)
    >>> run.metrics["test_neg_elbo"], run.history["loss"][-1]
    >>> run.models.generate(8, seed=0).shape            # (8, 28, 28, 1)
    >>> run.figures["samples"]                           # PosixPath('runs/.../samples.png')
    >>> run = hml_vae.load_run("runs/vae-tiny")          # later, or in another notebook
    >>> colour = hml_vae.train("conv_vae", images="photos/", image_size=(64, 64),
    ...                        output="runs/photos")

Everything the command line can set is a keyword argument (the fields of
:class:`hml_vae.config.Config`); ``config=`` starts from a saved config instead of a preset.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hml_vae.config import Config, make_config
from hml_vae.runs import Run, load_run

__all__ = ["Run", "evaluate", "load_run", "plot", "train"]


def train(model: str | None = None, *, output: str | Path, preset: str = "default",
          config: Config | str | Path | None = None, **settings) -> Run:
    """Trains one model and returns its finished run.

    Args:
        model: the family (``hml_vae.families.names()``); may be left out with ``config``.
        output: the run directory to create (an interrupted one of the same settings is
            resumed).
        preset: ``default`` (the book's recipe) or ``tiny``.
        config: a :class:`Config` or the path of a saved ``config.json`` to run again.
        settings: config fields to override, e.g. ``epochs=5, images="photos/"``.

    Returns:
        The :class:`~hml_vae.runs.Run`: ``config``, ``history``, ``metrics``, ``models``
        (the trained model bundle), ``figures`` and ``report``.
    """
    from hml_vae.training import train_and_evaluate

    base = Config.load(config) if isinstance(config, (str, Path)) else config
    if model is None:
        if base is None:
            raise ValueError("pass the model family (e.g. 'vae') or config=.")
        model = base.model
    train_and_evaluate(make_config(model, preset, base=base, **settings), output)
    return load_run(output)


def evaluate(run_dir: str | Path, iwae_samples: int | None = None, **locations) -> dict:
    """Evaluates a finished run again and updates its ``metrics.json``; returns them.

    ``locations`` say where the run's data are now when they moved: ``data_dir=``
    (IDX files), ``images=`` (a folder), ``npz=`` (a file) or ``download=True``; they win
    over the places saved in its ``config.json``.
    """
    from hml_vae.training import evaluate_run

    return evaluate_run(run_dir, iwae_samples, **locations)


def plot(run_dir: str | Path, **locations) -> dict[str, str]:
    """Redraws a finished run's figures and ``report.md`` from its saved models.

    ``locations``: as for :func:`evaluate`.

    Returns:
        The figures that could not be made, with the reason.
    """
    from hml_vae.plots import plot_run
    from hml_vae.training import load_run_data

    run = load_run(run_dir)
    config = dataclasses.replace(run.config, make_plots=True)
    data, _, config = load_run_data(config, **locations)
    return plot_run(run.directory, config, run.models, data, run.history, run.metrics)
