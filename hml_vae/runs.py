"""Reading a finished run directory back: its config, models, history and metrics.

Everything a later script (evaluate, plot, export, semi-supervised) needs comes from here,
so they all agree on what a finished run is and say the same thing when it is not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hml_vae.config import Config
from hml_vae.errors import RunError

INCOMPLETE_SUFFIX = ".incomplete"
MODEL_FILES = ("model.keras", "encoder.keras", "decoder.keras")


def incomplete_dir(run_dir: Path) -> Path:
    """Where a run is built until it is finished."""
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + INCOMPLETE_SUFFIX)


@dataclasses.dataclass
class Run:
    """A finished run: its directory, config, per-epoch history and metrics."""

    directory: Path
    config: Config
    history: dict
    metrics: dict

    def load_models(self):
        """The run's model bundle (encoder, decoder and the trainable whole)."""
        from hml_vae.models import load_saved_models  # keras: only when models are needed

        return load_saved_models(self.config, self.directory)


def check_finished(run_dir: Path) -> None:
    """Raises RunError saying why ``run_dir`` is not a finished run, and what to do."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        if incomplete_dir(run_dir).exists():
            raise RunError(
                f"{run_dir} has not finished: its training was interrupted and is in "
                f"{incomplete_dir(run_dir)}. Run the same train command again to resume it."
            )
        raise RunError(f"{run_dir} does not exist. Pass the --output directory of a "
                       f"finished scripts/train.py run.")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a directory; expected a run directory.")
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} has no config.json: it is not an hml_vae run directory.")
    missing = [name for name in (*MODEL_FILES, "history.json", "metrics.json")
               if not (run_dir / name).exists()]
    if missing:
        raise RunError(f"{run_dir} is incomplete: missing {', '.join(missing)}. Train it again "
                       f"into a new --output directory.")


def load_run(run_dir: str | Path) -> Run:
    """The finished run in ``run_dir`` (models are loaded on demand: :meth:`Run.load_models`).

    Raises:
        RunError: the directory is missing, interrupted or incomplete.
    """
    run_dir = Path(run_dir)
    check_finished(run_dir)
    return Run(
        directory=run_dir,
        config=Config.load(run_dir / "config.json"),
        history=json.loads((run_dir / "history.json").read_text()),
        metrics=json.loads((run_dir / "metrics.json").read_text()),
    )
