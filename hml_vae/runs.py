"""Run directories: one writer and one reader.

Everything that produces a directory of results (training, greedy pretraining, the
semi-supervised experiments) writes it through :class:`RunWriter`:

- the output is checked before anything is written (a finished run is never overwritten;
  a file, an unwritable parent, ... are one-line errors);
- the directory is built as ``<run>.incomplete`` and renamed to ``<run>`` only by
  :meth:`RunWriter.finish`, so a directory at ``<run>`` is always finished;
- the same command after an interruption resumes: the ``.incomplete`` directory's saved
  identity (``config.json``) must match, and each training stage continues from its
  ``keras.callbacks.BackupAndRestore`` checkpoint in ``checkpoints/<stage>``;
- SIGINT/SIGTERM let the epoch under way and its checkpoint finish, then stop
  (:meth:`RunWriter.stop_on_signal`);
- JSON files are written atomically; each stage's history holds every epoch once.

Everything a later script (evaluate, plot, export, semi-supervised) needs is read back by
:func:`load_run`, so they all agree on what a finished run is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras

from hml_vae.config import Config
from hml_vae.errors import ConfigError, Interrupted, RunDirectoryError, RunError, one_line
from hml_vae.tensorboard import ScalarLogger

INCOMPLETE_SUFFIX = ".incomplete"
MODEL_FILES = ("model.keras", "encoder.keras", "decoder.keras")


def incomplete_dir(run_dir: Path) -> Path:
    """Where a run is built until it is finished."""
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + INCOMPLETE_SUFFIX)


def write_json(path: Path, values) -> None:
    """Writes JSON through a temporary file so a reader never sees half a file. NaN and
    infinities (a diverged loss) are written as null: bare NaN is not JSON.

    Raises:
        RunDirectoryError: naming ``path`` when it cannot be written.
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    text = json.dumps(_json_safe(values), indent=2, sort_keys=True, allow_nan=False) + "\n"
    try:
        temporary.write_text(text)
        temporary.replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise RunDirectoryError(f"cannot write {path}: {error.strerror or error}.",
                                path=path) from None


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def read_json(path: Path, what: str = "file"):
    """The JSON in ``path``; RunDirectoryError naming the file when it is missing,
    unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: missing; the run directory is incomplete.",
                                path=path) from None
    except OSError as error:
        raise RunDirectoryError(f"{path}: cannot read it ({error.strerror or error}).",
                                path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirectoryError(
            f"{path}: not a valid {what} ({one_line(error)}); the file is corrupt. Train the "
            f"run again into a new directory.", path=path) from None


# --- Callbacks the writer puts around every fit ---------------------------------------------


class HistoryWriter(keras.callbacks.Callback):
    """Writes a history file after every epoch: each logged value per epoch and
    ``epoch_seconds``, the wall time of the epoch (validation included).

    On resume it keeps the epochs before the one training restarts at, so the history of
    an interrupted and resumed run has every epoch exactly once.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.history: dict[str, list] = {}
        self._started = None
        self._truncated = False

    def on_train_begin(self, logs=None):
        self.history = read_json(self.path, "history") if self.path.exists() else {}
        self._truncated = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._truncated:  # the first epoch of this process: drop what it redoes
            self.history = {key: values[:epoch] for key, values in self.history.items()}
            self._truncated = True
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "epoch_seconds": time.perf_counter() - self._started}
        row.update({key: float(value) for key, value in (logs or {}).items()})
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        write_json(self.path, self.history)


# The weights file keras.callbacks.BackupAndRestore writes (and ``.bkp``, its previous one).
CHECKPOINT_FILE = "latest.weights.h5"


def _readable_weights(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file that opens (a truncated one does not)."""
    import h5py

    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r"):
            return True
    except (OSError, ValueError):
        return False


class BackupUnlessDiverged(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that does not back up an epoch whose loss is NaN or infinite, so
    the checkpoint always holds the last epoch that finished sanely, and that says which
    file is corrupt when neither generation of the checkpoint can be read."""

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)  # falls back to the previous generation itself
        except (OSError, ValueError, KeyError) as error:  # h5py: OSError; wrong layout: others
            run = Path(self.backup_dir)
            while run.suffix != INCOMPLETE_SUFFIX and run != run.parent:
                run = run.parent
            raise RunDirectoryError(
                f"{self._weights_path}: the checkpoint of the interrupted run cannot be read "
                f"({one_line(error)}) and there is no older one to fall back to. Run the same "
                f"command with --restart to discard {run} and train from the start.",
                path=self._weights_path) from None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        super().on_epoch_end(epoch, logs)


class StopOnSignal(keras.callbacks.Callback):
    """On SIGINT or SIGTERM, lets the current epoch and its checkpoint finish, then stops.

    Use it as a context manager (it installs the handlers there and restores the previous
    ones after). A second signal gets the previous handler: Ctrl-C twice stops at once,
    and that epoch is redone on resume. ``received`` is the signal, or None.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, what: str | None = None):
        super().__init__()
        self.what = what  # what is finished before stopping; default: the epoch under way
        self.received: signal.Signals | None = None
        self._previous: dict = {}
        self._epoch = 0

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # Python's rule
            self._previous = {number: signal.signal(number, self._handle)
                              for number in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number, frame) -> None:
        self.received = signal.Signals(number)
        self.__exit__()  # the next signal acts as it would without us
        what = self.what or f"epoch {self._epoch + 1} and its checkpoint"
        print(f"\n{self.received.name}: finishing {what}, then stopping (send it again to "
              f"stop at once).", file=sys.stderr, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.received is not None:
            self.model.stop_training = True
        # A signal from now on is handled in the next epoch (stopping between epochs would
        # make Keras train one batch and call that epoch finished).
        self._epoch = epoch + 1


def diverged(losses: list) -> bool:
    """Whether a history's losses hold a NaN or infinity (saved as null)."""
    return any(loss is None or not math.isfinite(loss) for loss in losses)


def check_finite_losses(losses: list[float], history_path: Path,
                        start_over: str | None = None) -> None:
    """Raises RunError when training diverged (a loss is NaN or infinite)."""
    if diverged(losses):
        start_over = start_over or f"remove {history_path.parent} to start over"
        raise RunError(
            f"training diverged: the loss became {losses[-1]} in epoch {len(losses)} "
            f"(TerminateOnNaN stopped it), so no model was saved. Lower --learning-rate or "
            f"check the data, and train into another --output (or {start_over}). Partial "
            f"history: {history_path}."
        )


# --- The writer -----------------------------------------------------------------------------


def check_output(run_dir: Path, what: str = "--output") -> None:
    """Raises RunDirectoryError when ``run_dir`` cannot become a new run directory."""
    run_dir = Path(run_dir)

    def refuse(message: str):
        return RunDirectoryError(message, path=run_dir, flag=what)

    if run_dir.exists() or run_dir.is_symlink():
        if run_dir.is_dir() and (run_dir / "config.json").exists():
            raise refuse(f"{run_dir} already exists and holds a finished run. Choose "
                         f"another {what}, or remove it first to replace it.")
        kind = "a directory" if run_dir.is_dir() else "a file"
        raise refuse(f"{run_dir} already exists ({kind}); {what} must be a new directory. "
                     f"Choose another path.")
    existing = run_dir.absolute().parent
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        raise refuse(f"cannot create {run_dir}: {existing} is "
                     f"{'a broken link' if existing.is_symlink() else 'a file'}, not a "
                     f"directory. Choose another {what}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise refuse(f"cannot create {run_dir}: {existing} is not writable. Choose a "
                     f"{what} in a directory you can write to.")


def check_writable(run_dir: Path) -> None:
    """Raises RunDirectoryError when the files of a finished run cannot be replaced
    (before a long evaluation or plotting that would then fail to save)."""
    run_dir = Path(run_dir)
    for path in (run_dir, run_dir / "figures"):
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise RunDirectoryError(f"{path} is not writable, so the run's results cannot "
                                    f"be updated; make it writable, or copy the run.",
                                    path=path)


def discard_incomplete(run_dir: Path, what: str = "--output") -> Path | None:
    """Removes the interrupted run ``<run_dir>.incomplete`` (``--restart``); returns it,
    or None when there was none. A finished run is never touched."""
    check_output(run_dir, what)
    work_dir = incomplete_dir(run_dir)
    if not work_dir.exists() and not work_dir.is_symlink():
        return None
    try:
        if work_dir.is_dir() and not work_dir.is_symlink():
            shutil.rmtree(work_dir)
        else:
            work_dir.unlink()
    except OSError as error:
        raise RunDirectoryError(f"cannot remove {work_dir} for --restart: "
                                f"{error.strerror or error}.", path=work_dir) from None
    return work_dir


class RunWriter:
    """Builds one run directory (see the module docstring).

    Args:
        run_dir: where the finished directory goes.
        identity: what the run is (a :class:`Config`, or a dict of settings), saved as
            ``identity_file``; an interrupted run resumes only with the same identity.
        same: ``(saved identity, identity) -> bool``, default equality; training lets the
            strategy differ.
        what: the flag that named ``run_dir``, for messages.
    """

    def __init__(self, run_dir, identity, identity_file: str = "config.json",
                 same: Callable | None = None, what: str = "--output"):
        self.run_dir = Path(run_dir)
        self.work_dir = incomplete_dir(self.run_dir)
        self.identity = identity
        self.identity_file = identity_file
        self.same = same or (lambda saved, new: saved == new)
        self.what = what
        self.resumed = False
        self.stopper: StopOnSignal | None = None

    # Lifecycle ---------------------------------------------------------------------------

    def check(self) -> None:
        """Every check of the output that can fail, without writing anything."""
        check_output(self.run_dir, self.what)
        if self.work_dir.exists():
            self._check_resumable()

    @property
    def _start_over(self) -> str:
        """How to discard the interrupted run: train.py has --restart, others rm."""
        if isinstance(self.identity, Config):
            return f"pass --restart to discard {self.work_dir} and start over"
        return f"remove {self.work_dir} to start over"

    def _saved_identity(self):
        path = self.work_dir / self.identity_file
        if not path.exists():
            return None
        try:
            if isinstance(self.identity, Config):
                return Config.load(path)
            return read_json(path, self.identity_file)
        except (ConfigError, RunDirectoryError) as error:
            raise RunDirectoryError(f"the interrupted run in {self.work_dir} cannot be "
                                    f"resumed: {error} Or {self._start_over}.",
                                    path=path) from None

    def _check_resumable(self) -> None:
        if not self.work_dir.is_dir():
            raise RunDirectoryError(f"{self.work_dir} is a file; remove it or choose "
                                    f"another {self.what}.", path=self.work_dir)
        saved = self._saved_identity()
        if saved is None:
            raise RunDirectoryError(
                f"{self.work_dir} exists but holds no {self.identity_file}, so it is no "
                f"interrupted run of this command; {self._start_over}, or choose another "
                f"{self.what}.", path=self.work_dir)
        if not self.same(saved, self.identity):
            raise RunDirectoryError(
                f"{self.work_dir} holds an interrupted run with different settings (see "
                f"{self.work_dir / self.identity_file}). Run its own command again to "
                f"resume it, or {self._start_over}.", path=self.work_dir)
        for weights in sorted(self.work_dir.glob(f"checkpoints/**/{CHECKPOINT_FILE}")):
            if not any(_readable_weights(path) for path in
                       (weights, weights.with_name(weights.name + ".bkp"))):
                raise RunDirectoryError(
                    f"{weights}: the checkpoint of the interrupted run cannot be read (it is "
                    f"truncated or corrupt) and there is no older one to fall back to; "
                    f"{self._start_over}.", path=weights)

    def start(self) -> RunWriter:
        """Creates the ``.incomplete`` directory, or reopens an interrupted one."""
        self.check()
        if self.work_dir.exists():
            self.resumed = True
            print(f"Resuming the interrupted run in {self.work_dir}", file=sys.stderr)
        else:
            try:
                self.work_dir.mkdir(parents=True)
            except OSError as error:
                raise RunDirectoryError(f"cannot create {self.work_dir}: {error.strerror}.",
                                        path=self.work_dir) from None
        self.save_identity()
        return self

    def save_identity(self) -> None:
        path = self.work_dir / self.identity_file
        if isinstance(self.identity, Config):
            self.identity.save(path)
        else:
            write_json(path, self.identity)

    def finish(self) -> Path:
        """Removes the checkpoints and renames the directory into place."""
        shutil.rmtree(self.work_dir / "checkpoints", ignore_errors=True)
        self.work_dir.rename(self.run_dir)
        return self.run_dir

    # Files -------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.work_dir / name

    def write_json(self, name: str, values) -> Path:
        path = self.path(name)
        write_json(path, values)
        return path

    def read_json(self, name: str, default=None):
        path = self.path(name)
        if not path.exists():
            return default
        return read_json(path)

    def history_path(self, stage: str | None = None) -> Path:
        """``history.json`` of the run, or ``history_<stage>.json`` of one stage."""
        return self.path("history.json" if stage is None else f"history_{stage}.json")

    def stage_history(self, stage: str | None = None) -> dict:
        path = self.history_path(stage)
        return read_json(path, "history") if path.exists() else {}

    def log_dir(self, stage: str | None = None) -> Path:
        """TensorBoard logs: ``logs/`` of the run, or ``logs/<stage>`` of one stage."""
        logs = self.path("logs")
        return logs if stage is None else logs / stage

    # Training ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def stop_on_signal(self, what: str | None = None):
        """SIGINT/SIGTERM inside the block stop after the epoch under way (or ``what``)."""
        with StopOnSignal(what) as stopper:
            self.stopper = stopper
            try:
                yield stopper
            finally:
                self.stopper = None

    @property
    def stop_requested(self) -> signal.Signals | None:
        return None if self.stopper is None else self.stopper.received

    def callbacks(self, stage: str | None = None) -> list[keras.callbacks.Callback]:
        """History, TensorBoard scalars, checkpoint and NaN stop for one ``fit`` of
        ``stage``, plus the signal stop when inside :meth:`stop_on_signal`."""
        # The run's own fit keeps its checkpoint in checkpoints/, each stage of a family's
        # own procedure (greedy levels) in checkpoints/<stage>.
        checkpoints = self.path("checkpoints")
        if stage is not None:
            checkpoints = checkpoints / stage
        callbacks = [
            # History before the checkpoint: a kill between the two then leaves an epoch
            # in the history that is redone (and rewritten) on resume, never a
            # checkpointed epoch missing from the history.
            HistoryWriter(self.history_path(stage)),
            ScalarLogger(self.log_dir(stage)),  # flushed before the checkpoint, too
            # Two generations, so a kill while the weights file is written falls back to
            # the previous epoch; kept after fit (deleted by finish()) so that a finished
            # stage is skipped and an interrupted evaluation resumes without retraining.
            BackupUnlessDiverged(str(checkpoints), double_checkpoint=True,
                                 delete_checkpoint=False),
            keras.callbacks.TerminateOnNaN(),
        ]
        if self.stopper is not None:
            callbacks.append(self.stopper)
        return callbacks

    def check_fit(self, history, epochs: int, stage: str | None = None) -> None:
        """After a ``fit``: raises Interrupted when a signal stopped it, RunError when the
        loss diverged."""
        received = self.stop_requested
        if received is not None:
            done = len(self.stage_history(stage).get("epoch", []))
            raise Interrupted(
                f"{received.name} stopped training after epoch {done} of {epochs}"
                f"{f' of {stage}' if stage else ''}; its checkpoint is in "
                f"{self.path('checkpoints')}. Run the same command again to resume.",
                received.value,
            )
        check_finite_losses(history.history.get("loss", []), self.history_path(stage),
                            self._start_over)


# --- The reader -----------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """A finished run: its directory, config, per-epoch history and metrics.

    Example:
        >>> run = load_run("runs/vae")
        >>> run.metrics["test_neg_elbo"], run.models.reconstruct(images).shape
    """

    directory: Path
    config: Config
    history: dict
    metrics: dict

    def load_models(self):
        """The run's model bundle (encoder, decoder and the trainable whole).

        Raises:
            RunDirectoryError: a model file cannot be loaded (corrupt or truncated).
        """
        from hml_vae import families

        check_model_files(self.directory)
        try:
            return families.load_bundle(self.config, self.directory)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise RunDirectoryError(
                f"{self.directory}: its saved models cannot be loaded ({one_line(error)}); "
                f"a model file is corrupt. Train the run again into a new directory.",
                path=self.directory) from None

    @property
    def models(self):
        """The model bundle, loaded on first use."""
        if not hasattr(self, "_models"):
            self._models = self.load_models()
        return self._models

    @property
    def figures(self) -> dict[str, Path]:
        """{figure name: PNG path} of the figures the run has."""
        return {path.stem: path for path in sorted((self.directory / "figures").glob("*.png"))}

    @property
    def report(self) -> Path:
        return self.directory / "report.md"


def check_model_files(run_dir: Path) -> None:
    """Raises RunDirectoryError naming a ``.keras`` file that is not a zip archive (a
    truncated copy, an interrupted write), before TensorFlow is asked to load it."""
    for name in MODEL_FILES:
        path = Path(run_dir) / name
        if path.is_file() and not zipfile.is_zipfile(path):
            raise RunDirectoryError(
                f"{path}: not a readable .keras file ({path.stat().st_size} bytes, not a "
                f"zip archive): it is truncated or corrupt. Train the run again into a new "
                f"directory, or restore the file from a copy.", path=path)


def _divergence(work_dir: Path) -> str | None:
    """Where an unfinished run's loss became NaN or infinite, or None."""
    for path in sorted(work_dir.glob("history*.json")):
        try:
            losses = json.loads(path.read_text()).get("loss", [])
        except (OSError, ValueError, AttributeError):
            continue  # unreadable: then it cannot say the run diverged
        if isinstance(losses, list) and diverged(
                [loss if isinstance(loss, (int, float)) else None for loss in losses]):
            return f"the loss became NaN or infinite in epoch {len(losses)}; see {path}"
    return None


def check_finished(run_dir: Path) -> None:
    """Raises RunDirectoryError saying why ``run_dir`` is not a finished run, and what to
    do."""
    run_dir = Path(run_dir)

    def refuse(message: str):
        return RunDirectoryError(message, path=run_dir)

    if not run_dir.exists():
        work_dir = incomplete_dir(run_dir)
        if work_dir.is_dir():
            why = _divergence(work_dir)
            if why is not None:
                raise refuse(f"{run_dir} has not finished: its training diverged, so no "
                             f"model was saved ({why}). Train again with a lower "
                             f"--learning-rate, adding --restart to reuse --output {run_dir}.")
            raise refuse(f"{run_dir} has not finished: its training stopped and is in "
                         f"{work_dir}. Run the same train command again to resume it.")
        raise refuse(f"{run_dir} does not exist. Pass the --output directory of a finished "
                     f"scripts/train.py run.")
    if not run_dir.is_dir():
        raise refuse(f"{run_dir} is not a directory; expected a run directory.")
    if not (run_dir / "config.json").exists():
        raise refuse(f"{run_dir} has no config.json: it is not an hml_vae run directory.")
    missing = [name for name in (*MODEL_FILES, "history.json", "metrics.json")
               if not (run_dir / name).exists()]
    if missing:
        raise refuse(f"{run_dir} is incomplete: missing {', '.join(missing)}. Train it again "
                     f"into a new --output directory.")
    check_model_files(run_dir)


def load_run(run_dir: str | Path) -> Run:
    """The finished run in ``run_dir`` (models are loaded on demand).

    Raises:
        RunError: the directory is missing, interrupted, incomplete or corrupt.
    """
    run_dir = Path(run_dir)
    check_finished(run_dir)
    try:
        config = Config.load(run_dir / "config.json")
    except ValueError as error:
        raise RunDirectoryError(str(error), path=run_dir / "config.json") from None
    return Run(directory=run_dir, config=config,
               history=read_json(run_dir / "history.json", "history"),
               metrics=read_json(run_dir / "metrics.json", "metrics file"))
