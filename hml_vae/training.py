"""``train_and_evaluate(config, run_dir)``: one training run from config to finished run
directory.

A run directory is built under ``<run_dir>.incomplete`` and renamed to ``run_dir`` only
when everything is written, so a directory at ``run_dir`` is always a finished run. An
interrupted run keeps its ``.incomplete`` directory with ``checkpoints/``: running the same
command again resumes at the last finished epoch (``keras.callbacks.BackupAndRestore``).
SIGINT/SIGTERM let the current epoch and its checkpoint finish, then stop.

Training runs under the config's ``tf.distribute`` strategy (:mod:`hml_vae.distribute`):
models, optimizer and metrics are built in its scope and ``batch_size`` is the global
batch. In a multi-worker cluster every worker trains, but only the chief writes the run
directory; the others keep their checkpoints in a temporary directory they remove.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import keras

from hml_vae import data as data_lib
from hml_vae import distribute
from hml_vae.config import VAE_MODELS, XLA_FAMILIES, Config
from hml_vae.errors import Interrupted, RunError
from hml_vae.evaluation import evaluate_autoencoder, evaluate_vae, family_metrics
from hml_vae.models import build_models, load_saved_models
from hml_vae.models.vae import BetaWarmup, check_images
from hml_vae.plots import plot_run
from hml_vae.runs import incomplete_dir, load_run


def write_json(path: Path, values) -> None:
    """Writes JSON through a temporary file so a reader never sees half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


class HistoryWriter(keras.callbacks.Callback):
    """Writes ``history.json`` after every epoch: each logged value per epoch and
    ``epoch_seconds``, the wall time of the epoch (validation included).

    On resume it keeps the epochs before the one training restarts at, so the history of
    an interrupted and resumed run has every epoch exactly once.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.history: dict[str, list] = {}
        self._started = None

    def on_train_begin(self, logs=None):
        self.history = json.loads(self.path.read_text()) if self.path.exists() else {}
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


class BackupUnlessDiverged(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that does not back up an epoch whose loss is NaN or infinite, so
    the checkpoint always holds the last epoch that finished sanely."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        super().on_epoch_end(epoch, logs)


class StopOnSignal(keras.callbacks.Callback):
    """On SIGINT or SIGTERM, lets the current epoch and its checkpoint finish, then stops.

    Use it as a context manager around ``fit`` (it installs the handlers there and restores
    the previous ones after). A second signal gets the previous handler: Ctrl-C twice stops
    at once, and that epoch is redone on resume. ``received`` is the signal, or None.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
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
        print(f"\n{self.received.name}: finishing epoch {self._epoch + 1} and its checkpoint, "
              f"then stopping (send it again to stop at once).", file=sys.stderr, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.received is not None:
            self.model.stop_training = True
        # A signal from now on is handled in the next epoch (stopping between epochs would
        # make Keras train one batch and call that epoch finished).
        self._epoch = epoch + 1


def make_optimizer(config: Config) -> keras.optimizers.Optimizer:
    optimizers = {
        "nadam": keras.optimizers.Nadam,
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
    }
    return optimizers[config.optimizer](learning_rate=config.learning_rate)


# --- Model families ----------------------------------------------------------------------
# What differs between families is here; train_and_evaluate and evaluate_run are shared.


@dataclasses.dataclass(frozen=True)
class Family:
    """How one model family plugs into training and evaluation.

    Attributes:
        compile: compiles the trainable whole (``models.whole``) for the config.
        callbacks: the family's own callbacks (beyond checkpoints, history, NaN stop).
        check_images: raises ValueError for images the family cannot train on.
        evaluate: ``(config, models, data) -> metrics``.
    """

    compile: Callable[[Config, keras.Model], None]
    callbacks: Callable[[Config], list]
    check_images: Callable[[Config, object], None]
    evaluate: Callable[[Config, object, data_lib.Dataset], dict]


def _no_callbacks(config: Config) -> list:
    return []


def _no_check(config: Config, images) -> None:
    return None


def speed_options(config: Config) -> dict:
    """``compile`` arguments that make training fast without changing what it computes.

    XLA: as the config says, or (``jit_compile`` None) for the families it makes faster
    (:data:`hml_vae.config.XLA_FAMILIES`) when training on one device. Under a
    ``tf.distribute`` strategy (compiling in its scope) one step per execution: Keras
    3.15's multi-step loop fails on a distributed dataset iterator.
    """
    import tensorflow as tf

    distributed = tf.distribute.has_strategy()
    jit_compile = config.jit_compile
    if jit_compile is None:
        jit_compile = config.model in XLA_FAMILIES and not distributed
    return {"steps_per_execution": 1 if distributed else config.steps_per_execution,
            "jit_compile": jit_compile}


def _compile_autoencoder(config: Config, model: keras.Model) -> None:
    model.compile(optimizer=make_optimizer(config), loss="mse", **speed_options(config))


def _compile_vae(config: Config, model: keras.Model) -> None:
    # No compiled loss: −ELBO is the sum of the layers' add_loss terms (β·KL from Sampling,
    # −log p(x|z) from ReconstructionLoss), which also log ``kl`` and ``reconstruction_nll``.
    model.compile(optimizer=make_optimizer(config), **speed_options(config))


def _vae_callbacks(config: Config) -> list:
    return [BetaWarmup(config.beta, config.warmup_epochs)]


def _check_vae_images(config: Config, images) -> None:
    check_images(images, config.likelihood)


AUTOENCODER_FAMILY = Family(
    compile=_compile_autoencoder,
    callbacks=_no_callbacks,
    check_images=_no_check,
    evaluate=lambda config, models, data: {
        **evaluate_autoencoder(models, data), **family_metrics(config, models, data)
    },
)
VAE_FAMILY = Family(
    compile=_compile_vae,
    callbacks=_vae_callbacks,
    check_images=_check_vae_images,
    evaluate=evaluate_vae,
)


def family_of(config: Config) -> Family:
    """How runs of ``config.model`` are trained and evaluated."""
    return VAE_FAMILY if config.model in VAE_MODELS else AUTOENCODER_FAMILY


def make_callbacks(config: Config, work_dir: Path) -> list[keras.callbacks.Callback]:
    callbacks = [
        # History before the checkpoint: a kill between the two then leaves an epoch in the
        # history that is redone (and rewritten) on resume, never a checkpointed epoch
        # missing from the history.
        HistoryWriter(work_dir / "history.json"),
        # Two generations, so a kill while the weights file is written falls back to the
        # previous epoch; kept after fit (deleted when the run is finished) so that an
        # interrupted evaluation resumes without retraining.
        BackupUnlessDiverged(str(work_dir / "checkpoints"), double_checkpoint=True,
                             delete_checkpoint=False),
        keras.callbacks.TerminateOnNaN(),
    ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    return callbacks


def check_run_dir_free(run_dir: Path) -> None:
    if run_dir.exists():
        raise RunError(
            f"{run_dir} already exists and holds a finished run. Choose another --output, or "
            f"remove it first if you want to replace it."
        )


def same_training(saved: Config, config: Config) -> bool:
    """Whether two configs train the same model: they may differ in how (strategy, CPU
    replicas), so a run interrupted on one machine can resume on another."""
    how = {"strategy": config.strategy, "cpu_replicas": config.cpu_replicas}
    return dataclasses.replace(saved, **how) == config


def prepare_work_dir(config: Config, run_dir: Path) -> Path:
    """The ``.incomplete`` directory to build the run in: new, or an interrupted run of
    the same config to resume."""
    work_dir = incomplete_dir(run_dir)
    saved_config = work_dir / "config.json"
    if work_dir.exists():
        if saved_config.exists() and same_training(Config.load(saved_config), config):
            print(f"Resuming the interrupted run in {work_dir}", file=sys.stderr)
            config.save(saved_config)  # the strategy it now runs under
            return work_dir
        raise RunError(
            f"{work_dir} holds an interrupted run with a different config. Re-run it with "
            f"its own config (see {saved_config}) to resume it, or remove the directory."
        )
    work_dir.mkdir(parents=True)
    config.save(saved_config)
    return work_dir


@contextlib.contextmanager
def worker_dir(run_dir: Path, task: distribute.ClusterTask):
    """A temporary run directory for a non-chief worker, removed afterwards.

    Keras writes checkpoints on every worker; only the chief's are the run's. When the
    chief's interrupted run is visible here (a shared file system, or one machine), its
    checkpoint is copied in so that this worker resumes at the same epoch as the chief.
    """
    path = Path(tempfile.mkdtemp(prefix=f"hml_vae-{task.type}{task.index}-"))
    try:
        chief_checkpoints = incomplete_dir(run_dir) / "checkpoints"
        if chief_checkpoints.is_dir():
            shutil.copytree(chief_checkpoints, path / "checkpoints")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def check_finite_losses(losses: list[float], history_path: Path) -> None:
    """Raises RunError when training diverged (a loss is NaN or infinite)."""
    if any(not math.isfinite(loss) for loss in losses):
        raise RunError(
            f"training diverged: the loss became {losses[-1]} in epoch {len(losses)} "
            f"(TerminateOnNaN stopped it), so no model was saved. Lower --learning-rate or "
            f"check the data, and train into another --output (or remove "
            f"{history_path.parent}). Partial history: {history_path}."
        )


def save_models(models, work_dir: Path) -> None:
    """``model.keras``, ``encoder.keras`` and ``decoder.keras`` of a run directory."""
    models.whole.save(work_dir / "model.keras")
    models.encoder.save(work_dir / "encoder.keras")
    models.decoder.save(work_dir / "decoder.keras")


def make_training_data(config: Config, data: data_lib.Dataset, replicas: int = 1):
    """The training and validation pipelines for ``model.fit``.

    Training batches are all full (``make_pipeline``'s ``full_batches``): each epoch leaves
    out a different few (< batch_size) of the shuffled training images. Validation uses
    every image.

    Under a strategy the batches are global (split across ``replicas``) and sharded by
    DATA; up to ``replicas - 1`` images are left out so that the last batch splits evenly
    (see :func:`hml_vae.distribute.evenly_split_size`).
    """

    def pipeline(images, **kwargs):
        images = images[: distribute.evenly_split_size(len(images), config.batch_size,
                                                       replicas)]
        dataset = data_lib.make_pipeline(images, config.batch_size, **kwargs)
        return dataset.with_options(distribute.distribute_options()) if replicas > 1 else dataset

    train = pipeline(data.train.images, shuffle=True, seed=config.seed, binarize=config.binarize,
                     full_batches=True)
    # With dynamic binarization, load_dataset has drawn the validation images once.
    return train, pipeline(data.valid.images)


def build_and_compile(config: Config, strategy=None):
    """The config's models, compiled; built in ``strategy``'s scope (the default: none).

    Models, optimizer and metrics must be created in the scope so that their variables
    are mirrored across the replicas.
    """
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        models = build_models(config)
        family_of(config).compile(config, models.whole)
    return models


def execution_steps(steps_per_epoch: int, wanted: int) -> int:
    """The largest divisor of ``steps_per_epoch`` that is at most ``wanted``."""
    return max(steps for steps in range(1, min(wanted, steps_per_epoch) + 1)
               if steps_per_epoch % steps == 0)


def fit_arguments(model: keras.Model, train, valid=None) -> dict:
    """``model.fit`` data arguments that, when they can, keep one iterator per pipeline.

    ``fit`` otherwise makes a new iterator of each pipeline every epoch, and in TF 2.21
    deleting a tf.data iterator takes ~0.17 s whatever the data set (even
    ``Dataset.range(10)``), up to 0.65 s of an epoch inside ``fit``: a quarter of the
    dense VAE's epoch on 2 cores (benchmarks/throughput.py). Repeated pipelines with a
    fixed number of steps are read by one iterator from the first epoch to the last, each
    epoch still reshuffled.

    Keras 3.15 runs whole executions of ``steps_per_execution`` steps, so on a repeated
    pipeline an execution that straddled the end of an epoch would train on the next
    epoch's batches. The steps per execution become the largest divisor of the epoch's
    steps up to the compiled number (429 steps, 32 wanted: 13); when that divisor is below
    a quarter of the wanted number (1,718 steps: 2), the pipelines are passed as they are.

    Args:
        model: compiled, not yet trained (its steps per execution may be lowered).
        train, valid: pipelines from :func:`hml_vae.data.make_pipeline` (known lengths).
    """
    steps = int(train.cardinality())
    wanted = model.steps_per_execution
    divisor = execution_steps(steps, wanted)
    if divisor < max(1, wanted // 4):
        return {"x": train, "validation_data": valid}
    model.steps_per_execution = divisor
    arguments = {"x": train.repeat(), "steps_per_epoch": steps}
    if valid is not None:
        arguments.update(validation_data=valid.repeat(),
                         validation_steps=int(valid.cardinality()))
    return arguments


def fit(config: Config, model: keras.Model, train, valid, work_dir: Path):
    """``model.fit`` with the run's callbacks; SIGINT/SIGTERM stop after the current epoch.

    Returns:
        (the Keras history, the signal that stopped training or None).
    """
    with StopOnSignal() as stopper:
        history = model.fit(
            **fit_arguments(model, train, valid),
            epochs=config.epochs,
            # Family callbacks first: what they add to the logs (β) reaches HistoryWriter.
            callbacks=family_of(config).callbacks(config) + make_callbacks(config, work_dir)
            + [stopper],
            shuffle=False,  # the pipeline shuffles, with the run's seed
            verbose=1 if sys.stdout.isatty() else 2,  # 2: one line per epoch in logs
        )
    return history, stopper.received


def check_not_interrupted(received, config: Config, work_dir: Path, chief: bool) -> None:
    """Raises :class:`Interrupted` saying how to resume when a signal stopped training."""
    if received is None:
        return
    history_path = work_dir / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else {}
    done = len(history.get("epoch", []))
    where = work_dir / "checkpoints" if chief else "the chief's run directory"
    raise Interrupted(
        f"{received.name} stopped training after epoch {done} of {config.epochs}; its "
        f"checkpoint is in {where}. Run the same command again to resume at epoch "
        f"{done + 1}.", received.value,
    )


def train_and_evaluate(config: Config, run_dir: str | Path) -> dict:
    """Trains ``config.model``, evaluates it and writes the run directory.

    Args:
        config: the run's configuration (see :func:`hml_vae.config.make_config`).
        run_dir: where the finished run goes; must not exist yet.

    Returns:
        The metrics written to ``metrics.json``; empty on a non-chief worker of a
        multi-worker cluster, which trains but writes no run directory.

    Raises:
        DataError / ValueError: bad data, config, TF_CONFIG or strategy, before training.
        RunError: the run directory exists, or training diverged (NaN loss).
        Interrupted: SIGINT/SIGTERM stopped training after a checkpointed epoch.
    """
    run_dir = Path(run_dir)
    check_run_dir_free(run_dir)  # before loading data: fail fast
    # Before any tensor exists: logical devices and collective ops are start-up settings.
    distribution = distribute.setup(config)
    data = data_lib.load_dataset(
        config.dataset, config.data_dir, config.limit, config.binarize, config.seed,
        config.download,
    )
    family = family_of(config)
    for split in (data.train, data.valid, data.test):
        family.check_images(config, split.images)
    keras.utils.set_random_seed(config.seed)  # the same initial weights on every worker
    models = build_and_compile(config, distribution.strategy)
    train, valid = make_training_data(config, data, distribution.replicas)

    if not distribution.is_chief:
        with worker_dir(run_dir, distribution.task) as work_dir:
            print(f"{distribution.describe()}; checkpoints in {work_dir} (removed at the "
                  f"end); the chief writes {run_dir}", file=sys.stderr)
            history, received = fit(config, models.whole, train, valid, work_dir)
            check_not_interrupted(received, config, work_dir, chief=False)
            check_finite_losses(history.history.get("loss", []), work_dir / "history.json")
        return {}

    work_dir = prepare_work_dir(config, run_dir)
    print(f"Training {config.model} on {len(data.train)} {config.dataset} images from "
          f"{data.source}; {distribution.describe()}; run directory {run_dir}",
          file=sys.stderr)
    history, received = fit(config, models.whole, train, valid, work_dir)
    check_not_interrupted(received, config, work_dir, chief=True)
    check_finite_losses(history.history.get("loss", []), work_dir / "history.json")
    save_models(models, work_dir)
    if distribution.name != "default":
        # Evaluate on one device, outside the strategy: under multi_worker, predict() would
        # wait for collectives from workers that have finished.
        models = load_saved_models(config, work_dir)
    recorded = json.loads((work_dir / "history.json").read_text())
    metrics = family.evaluate(config, models, data)
    metrics.update(
        # Summed epoch times, so a resumed run counts the epochs of every attempt.
        train_seconds=sum(recorded.get("epoch_seconds", [])),
        epochs_trained=len(recorded.get("epoch", [])),
        train_images=len(data.train),
        data_source=data.source,
        strategy=distribution.name,
        replicas=distribution.replicas,
    )
    write_json(work_dir / "metrics.json", metrics)
    failures = plot_run(work_dir, config, models, data, recorded, metrics)
    for name, why in failures.items():
        print(f"warning: figure {name} could not be made: {why}", file=sys.stderr)
    shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)  # the run is finished
    work_dir.rename(run_dir)
    return metrics


def evaluate_run(run_dir: str | Path, iwae_samples: int | None = None) -> dict:
    """Reloads a finished run, evaluates it again and updates its ``metrics.json``
    atomically (keys not recomputed, such as training times, are kept).

    Args:
        run_dir: a directory written by :func:`train_and_evaluate`.
        iwae_samples: K for the importance-weighted estimate (default: the run's config).

    Returns:
        The updated metrics.
    """
    run = load_run(run_dir)
    config = run.config
    if iwae_samples is not None:
        config = dataclasses.replace(config, iwae_samples=iwae_samples)  # validates K
    family = family_of(config)
    data = data_lib.load_dataset(
        config.dataset, config.data_dir, config.limit, config.binarize, config.seed,
        config.download,
    )
    family.check_images(config, data.test.images)
    keras.utils.set_random_seed(config.seed)
    metrics = {**run.metrics, **family.evaluate(config, run.load_models(), data)}
    write_json(run.directory / "metrics.json", metrics)
    return metrics
