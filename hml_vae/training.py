"""``train_and_evaluate(config, run_dir)``: one training run from config to finished run
directory, for every family.

The run directory is written by :class:`hml_vae.runs.RunWriter` (checks, ``.incomplete``
-> rename, resume from checkpoints, SIGINT/SIGTERM). A family trains its whole model with
one ``fit``, unless it declares a procedure of its own (greedy layer-wise pretraining),
which gets a :class:`Trainer` to run its stages through the same writer.

Training runs under the config's ``tf.distribute`` strategy (:mod:`hml_vae.distribute`):
models, optimizer and metrics are built in its scope and ``batch_size`` is the global
batch. In a multi-worker cluster every worker trains, but only the chief writes the run
directory; the others keep their checkpoints in a temporary directory they remove.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from hml_vae import data as data_lib
from hml_vae import distribute, families
from hml_vae.config import Config
from hml_vae.evaluation import evaluate
from hml_vae.plots import plot_run
from hml_vae.runs import RunWriter, check_output, incomplete_dir, load_run, write_json
from hml_vae.tensorboard import IMAGE_COUNT, EpochImages, ImageLogger


def make_optimizer(config: Config, learning_rate: float | None = None
                   ) -> keras.optimizers.Optimizer:
    """The config's optimizer, at ``learning_rate`` (default the config's)."""
    optimizers = {
        "nadam": keras.optimizers.Nadam,
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
    }
    return optimizers[config.optimizer](learning_rate=learning_rate or config.learning_rate)


def speed_options(config: Config) -> dict:
    """``compile`` arguments that make training fast without changing what it computes.

    XLA: as the config says, or (``jit_compile`` None) the family's measured choice when
    training on one device. Under a ``tf.distribute`` strategy (compiling in its scope)
    one step per execution: Keras 3.15's multi-step loop fails on a distributed iterator.
    """
    import tensorflow as tf

    distributed = tf.distribute.has_strategy()
    jit_compile = config.jit_compile
    if jit_compile is None:
        jit_compile = config.family.xla and not distributed
    return {"steps_per_execution": 1 if distributed else config.steps_per_execution,
            "jit_compile": jit_compile}


def compile_model(config: Config, model: keras.Model, loss: str | None,
                  learning_rate: float | None = None) -> None:
    """Compiles ``model`` with the run's optimizer (at ``learning_rate``, default the
    config's); ``loss`` None when the model's layers add their loss terms (VAEs)."""
    model.compile(optimizer=make_optimizer(config, learning_rate), loss=loss,
                  **speed_options(config))
    # Slots made now rather than inside the first traced step: a step that creates
    # variables is traced twice by TensorFlow, and each trace costs a large part of the
    # first epoch.
    model.optimizer.build(model.trainable_variables)


def build_and_compile(config: Config, strategy=None):
    """The config's models, compiled; built in ``strategy``'s scope (the default: none).

    Models, optimizer and metrics must be created in the scope so that their variables
    are mirrored across the replicas.
    """
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        models = families.build(config)
        compile_model(config, models.whole, config.family.loss)
    return models


def execution_steps(steps_per_epoch: int, wanted: int) -> int:
    """The smallest divisor of ``steps_per_epoch`` that is at least ``wanted`` (the whole
    epoch when ``wanted`` exceeds it)."""
    return min(steps for steps in range(min(wanted, steps_per_epoch), steps_per_epoch + 1)
               if steps_per_epoch % steps == 0)


@dataclasses.dataclass(frozen=True)
class TrainingPipeline:
    """A training pipeline that can start at any epoch.

    Attributes:
        build: ``build(first_epoch=..., epochs=...)`` -> a ``tf.data`` pipeline of ``epochs``
            epochs (None: endless) from ``first_epoch`` (an int, or an int64
            ``tf.Variable`` read when an iteration starts), each epoch's order and binary
            draws fixed by the run's seed and the epoch's index
            (:func:`hml_vae.data.make_pipeline`).
        steps: batches per epoch.
        batch_size: images per batch (every batch is full).
    """

    build: Callable
    steps: int
    batch_size: int

    @classmethod
    def of_arrays(cls, images: np.ndarray, batch_size: int, seed: int,
                  binarize: str = "none") -> TrainingPipeline:
        """Shuffled full batches of in-memory arrays (N, ...)."""
        return cls(functools.partial(data_lib.make_pipeline, images, batch_size, shuffle=True,
                                     seed=seed, binarize=binarize, full_batches=True),
                   data_lib.batch_count(len(images), batch_size, full_batches=True), batch_size)


class EpochIndex(keras.callbacks.Callback):
    """The epoch ``fit`` is at, in a variable that a pipeline reads when an iteration
    starts: set in ``on_epoch_begin``, before ``fit`` makes the epoch's iterator (or, for
    one iterator over every epoch, the first one's), so a resumed fit starts its data at
    the epoch it resumes."""

    def __init__(self):
        super().__init__()
        import tensorflow as tf

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_index")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


# The most memory one stacked execution of training batches may take (two are alive: the
# one training and the one prefetched). Above it a step's batch is large enough that
# Keras' own per-step loop costs little next to the step.
STACKED_EXECUTION_BYTES = 128 * 2**20


def fit_arguments(model: keras.Model, train: TrainingPipeline, valid=None,
                  callbacks=()) -> dict:
    """``model.fit`` arguments that read each epoch's own batches, whichever epoch ``fit``
    starts at (a resumed run), from one iterator for the whole fit, in executions of
    several steps.

    ``fit`` otherwise makes a new iterator of the training pipeline every epoch, and in
    TF 2.21 deleting a tf.data iterator takes ~0.17 s whatever the data set. So one
    iterator reads an endless stream of epochs from the one ``fit`` starts at, ``steps``
    batches an epoch; the pipeline's first epoch is an :class:`EpochIndex` variable that
    ``fit`` sets at the start of each epoch, before it makes the iterator: the batches of
    epoch e are those of epoch e of an uninterrupted run.

    Keras 3.15 runs whole executions of ``steps_per_execution`` steps, so an execution
    that straddled the end of an epoch would train on the next epoch's batches: the steps
    per execution become the smallest divisor of the epoch's steps from the compiled
    number up (1,718 steps, 32 wanted: 859; 429 steps: 33). Longer executions cost only
    how often a progress bar moves and how long Ctrl-C waits for the execution to end.
    On one TensorFlow device each execution is one call of :func:`execution_loop`, its
    batches stacked by the pipeline, unless the stack would take more than
    ``STACKED_EXECUTION_BYTES``.

    The validation pipeline is read anew each epoch, to its end: from a repeated one,
    Keras would run every validation execution whole and read past the last batch into
    the next pass, counting the first batches twice.

    Args:
        model: compiled, not yet trained (its steps per execution are raised to a divisor,
            its ``train_function`` may be set).
        train: the training data.
        valid: a finite validation pipeline (not shuffled), or None.
        callbacks: the fit's other callbacks.

    Returns:
        ``x``, ``steps_per_epoch``, ``callbacks`` and ``validation_data``.
    """
    epoch = EpochIndex()
    steps = execution_steps(train.steps, model.steps_per_execution)
    model.steps_per_execution = steps
    x = stacked_executions(model, train.build(first_epoch=epoch.epoch, epochs=None),
                           train.batch_size)
    return {"x": x, "steps_per_epoch": train.steps, "callbacks": [epoch, *callbacks],
            "validation_data": valid}


def stacked_executions(model: keras.Model, pipeline, batch_size: int):
    """``pipeline`` with each execution's batches stacked and ``model``'s
    ``train_function`` an :func:`execution_loop` over them, where that applies (more than
    one step per execution, one TensorFlow device, images of a fixed size, a stack of at
    most ``STACKED_EXECUTION_BYTES``); else ``pipeline`` and Keras' own loop."""
    steps = model.steps_per_execution
    image_bytes = _image_bytes(pipeline)
    if steps == 1 or not one_tensorflow_device() or image_bytes is None or (
            steps * batch_size * image_bytes > STACKED_EXECUTION_BYTES):
        return pipeline
    model.train_function = execution_loop(model, steps)
    # The pairs are (x, x): one stack of the inputs serves as both.
    return pipeline.map(lambda inputs, targets: inputs).batch(
        steps, drop_remainder=True).prefetch(1)


def one_tensorflow_device() -> bool:
    import tensorflow as tf

    return keras.backend.backend() == "tensorflow" and not tf.distribute.has_strategy()


def _image_bytes(dataset) -> int | None:
    """Bytes of one input image of a pipeline of (x, x) batches (None: not fixed)."""
    spec = dataset.element_spec[0]
    elements = spec.shape[1:].num_elements()
    return None if elements is None else elements * spec.dtype.size


def execution_loop(model: keras.Model, steps: int) -> Callable:
    """A ``train_function`` for ``model.fit`` that runs ``steps`` training steps in one call
    of one compiled loop (XLA when the model compiles with it).

    Keras' own loop launches each compiled step from a TensorFlow while loop that first
    fetches the step's batch: a fixed cost per step as large as a small dense model's step
    itself. Here ``fit``'s iterator gives the execution's inputs as one stacked tensor
    (steps, batch, ...), and the loop slices each step's batch from it; the metrics
    returned are those after the last step, as Keras' loop returns.
    """
    import tensorflow as tf

    def run(stacked):
        def step(index):
            inputs = stacked[index]
            model.train_step((inputs, inputs))
            return (index + 1,)

        tf.while_loop(lambda index: index < steps, step, (tf.constant(0),))
        return model.get_metrics_result()

    compiled = tf.function(run, jit_compile=bool(model.jit_compile))

    def train_function(iterator):
        return compiled(iterator.get_next())

    return train_function


def make_training_data(config: Config, data, replicas: int = 1):
    """The training data and the validation pipeline for ``model.fit``.

    Training batches are all full: each epoch leaves out a different few (< batch_size) of
    the shuffled training images, so an XLA-compiled step sees one batch shape. Validation
    uses every image. Under a strategy the batches are global and sharded by DATA, and a
    last validation batch too small to give every replica an image joins the one before.

    Returns:
        (a :class:`TrainingPipeline`, the validation pipeline).
    """
    def options(dataset):
        return dataset.with_options(distribute.distribute_options()) if replicas > 1 else dataset

    def build(first_epoch, epochs):
        return options(data.train.pipeline(
            config.batch_size, shuffle=True, seed=config.seed, binarize=config.binarize,
            full_batches=True, first_epoch=first_epoch, epochs=epochs))

    train = TrainingPipeline(build, data_lib.batch_count(len(data.train), config.batch_size,
                                                         full_batches=True), config.batch_size)
    valid = distribute.with_replica_sized_batches(
        data.valid.pipeline(config.batch_size), len(data.valid), config.batch_size, replicas)
    return train, options(valid)


def verbosity() -> int:
    return 1 if sys.stdout.isatty() else 2  # 2: one line per epoch in logs


def early_stopping(config: Config) -> list[keras.callbacks.Callback]:
    """``--patience N``: stop a fit after N epochs without a lower validation loss and keep
    its best weights. Its count is not checkpointed: a resumed fit counts from where it
    resumed."""
    if not config.early_stopping_patience:
        return []
    return [keras.callbacks.EarlyStopping(patience=config.early_stopping_patience,
                                          restore_best_weights=True)]


@dataclasses.dataclass
class Trainer:
    """What a family's own training procedure (``Family.train``) may use: the run's
    config, data and writer, and fits that checkpoint, log and stop like the default one.
    Each ``stage`` has its own history file and checkpoints, so a resumed run skips
    finished stages and continues the one it was in."""

    config: Config
    data: object
    writer: RunWriter
    replicas: int = 1

    def log(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def compile(self, model: keras.Model, loss: str | None = "mse",
                learning_rate: float | None = None) -> None:
        compile_model(self.config, model, loss, learning_rate)

    def validation_images(self) -> np.ndarray:
        """The fixed validation images TensorBoard shows reconstructed every epoch."""
        return self.data.valid.head(IMAGE_COUNT)[0]

    def bundle_images(self, models) -> EpochImages:
        """TensorBoard's per-epoch images of a model bundle being trained."""
        return EpochImages.of_bundle(models, self.validation_images(), self.config.seed)

    def fit(self, model: keras.Model, train, valid, epochs: int, stage: str | None = None,
            callbacks=(), images: EpochImages | None = None) -> dict:
        """``model.fit`` of one stage with the writer's callbacks; returns its history.
        ``train``: a :class:`TrainingPipeline`; ``valid``: a pipeline; ``images``: what
        TensorBoard shows after each epoch (none when None)."""
        if images is not None and not distribute.in_strategy_scope():
            # Before the writer's checkpoint, so an epoch's images are written with it.
            # Not under a strategy: calling the model between epochs would run it in the
            # cross-replica context, where Sampling cannot draw from its distributed state.
            callbacks = [*callbacks, ImageLogger(self.writer.log_dir(stage) / "images", images)]
        history = model.fit(
            # Family callbacks first: what they add to the logs (β) reaches the history.
            **fit_arguments(model, train, valid, callbacks=[
                *callbacks, *self.writer.callbacks(stage), *early_stopping(self.config)]),
            epochs=epochs,
            shuffle=False,  # the pipeline shuffles, with the run's seed
            verbose=verbosity(),
        )
        self.writer.check_fit(history, epochs, stage)
        return history.history

    def fit_split(self, model: keras.Model, epochs: int, stage: str | None = None,
                  callbacks=(), images: EpochImages | None = None) -> dict:
        """Fits ``model`` to reconstruct the run's training images."""
        train, valid = make_training_data(self.config, self.data, self.replicas)
        return self.fit(model, train, valid, epochs, stage, callbacks, images)

    def fit_arrays(self, model: keras.Model, inputs, valid_inputs,
                   stage: str | None = None, images: EpochImages | None = None) -> dict:
        """Fits ``model`` to reconstruct in-memory feature arrays (N, features)."""
        config = self.config
        train = TrainingPipeline.of_arrays(inputs, config.batch_size, config.seed)
        valid = distribute.with_replica_sized_batches(
            data_lib.make_pipeline(valid_inputs, config.batch_size), len(valid_inputs),
            config.batch_size, self.replicas)
        return self.fit(model, train, valid, config.epochs, stage, images=images)

    def stage_history(self, stage: str | None = None) -> dict:
        return self.writer.stage_history(stage)


def same_training(saved: Config, config: Config) -> bool:
    """Whether two configs train the same model: they may differ in how (strategy, CPU
    replicas), so a run interrupted on one machine can resume on another."""
    how = {"strategy": config.strategy, "cpu_replicas": config.cpu_replicas,
           "cluster_timeout": config.cluster_timeout}
    return dataclasses.replace(saved, **how) == config


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


def load_data(config: Config):
    """The config's data set and the config bound to its image shape (the family fills
    in what depends on it: a VAE's likelihood and binarization)."""
    data, _, config = load_data_and_gray(config)
    return data, config


def load_data_and_gray(config: Config):
    """(the data set as the run trains on it, the same data set with gray pixels, the
    config bound to its image shape): metrics named "gray" are computed on the latter."""
    gray = data_lib.load_for_config(dataclasses.replace(config, binarize="none"))
    config = config.for_images(gray.image_shape)
    data = gray.binarized(config.binarize, config.seed) if config.binarize != "none" else gray
    return data, gray, config


# Where a finished run's images are, when they are no longer where it was trained: each
# flag replaces the location of one kind of source (scripts/evaluate.py, scripts/plot.py).
DATA_LOCATIONS = {"data_dir": "--data-dir", "images": "--images", "npz": "--npz",
                  "download": "--download"}


def source_kind(config: Config) -> str:
    """``images``, ``npz``, ``idx`` or ``tfds``: the kind of source the config reads."""
    if config.images is not None:
        return "images"
    if config.npz is not None:
        return "npz"
    return "idx" if config.dataset in data_lib.IDX_DATASETS else "tfds"


def relocate_data(config: Config, **locations) -> Config:
    """``config`` with its data source moved: the locations given (not None) replace the
    saved ones, so a run whose data moved can be evaluated and plotted again.

    Args:
        locations: ``data_dir`` (IDX files), ``images`` (a folder), ``npz`` (a file),
            ``download`` (IDX or tensorflow-datasets). Each must fit the run's kind of
            source: a location never turns a run into one of other data.

    Raises:
        ValueError: an unknown location, or one for another kind of source.
    """
    unknown = sorted(set(locations) - set(DATA_LOCATIONS))
    if unknown:
        raise ValueError(f"unknown data locations {unknown}; expected {sorted(DATA_LOCATIONS)}.")
    given = {name: value for name, value in locations.items() if value is not None}
    kind = source_kind(config)
    fits = {"data_dir": ("idx",), "images": ("images",), "npz": ("npz",),
            "download": ("idx", "tfds")}
    trained_on = {"images": f"the image folder {config.images}", "npz": f"the file {config.npz}",
                  "idx": f"the IDX files of {config.dataset}",
                  "tfds": f"tensorflow-datasets {config.dataset!r}"}[kind]
    right_flag = {"images": "--images FOLDER", "npz": "--npz FILE", "idx": "--data-dir DIR",
                  "tfds": "TFDS_DATA_DIR (or --download)"}[kind]
    for name in given:
        if kind not in fits[name]:
            raise ValueError(f"{DATA_LOCATIONS[name]} does not fit this run: it was trained on "
                             f"{trained_on}; give its new place with {right_flag}.")
    return dataclasses.replace(config, **given) if given else config


def load_run_data(config: Config, **locations):
    """:func:`load_data_and_gray` for a finished run's saved ``config``, with its data
    source moved by ``locations`` (:func:`relocate_data`); ValueError when the images found
    there do not have the run's image shape.

    Returns:
        (the data as the run trains on them, the same with gray pixels, the bound config).
    """
    try:
        data, gray, bound = load_data_and_gray(relocate_data(config, **locations))
    except data_lib.DataError as error:
        if any(value is not None for value in locations.values()):
            raise
        flag = {"images": "--images", "npz": "--npz", "idx": "--data-dir"}.get(
            source_kind(config))
        if flag is None:
            raise
        raise data_lib.DataError(f"{error} If the run's data moved, give their new place with "
                                 f"{flag}.") from None
    if config.image_shape is not None and tuple(data.image_shape) != tuple(config.image_shape):
        raise ValueError(
            f"the images of {data.source} are {'×'.join(map(str, data.image_shape))}, but the "
            f"run was trained on {'×'.join(map(str, config.image_shape))} images; point the "
            f"data location at the run's own data set.")
    return data, gray, bound


def check_family_can_train(config: Config, data, distribution) -> None:
    """Raises ValueError, before anything is written, when the family's own training
    procedure cannot run on this data or under this strategy."""
    family = config.family
    distribute.check_split_sizes({"validation": len(data.valid)}, distribution.replicas)
    if family.train is not None and distribution.name == "multi_worker":
        raise ValueError(f"{config.model} trains its stages in one process (strategy default "
                         f"or mirrored); use --strategy mirrored.")
    if family.needs_memory and not data.train.in_memory:
        raise ValueError(
            f"{config.model} holds the training images in memory, but {data.name} "
            f"({len(data.train):,} training images) is streamed from its files; pass "
            f"--streaming memory if it fits, or --limit N.")


def train_models(config: Config, models, trainer: Trainer):
    """Trains with the family's own procedure, or one ``fit`` of the whole model.

    Returns:
        (the trained bundle, in float32 whatever precision it trained in, extra metrics,
        the history for the training curves or None when ``history.json`` already holds
        it).
    """
    family = config.family
    with families.dtype_policy(config.precision):  # for the models a procedure builds
        if family.train is not None:
            models, extra, curves = family.train(config, trainer)
        else:
            trainer.fit_split(models.whole, config.epochs, callbacks=family.callbacks(config),
                              images=trainer.bundle_images(models))
            extra, curves = {}, None
    return families.in_float32(config, models), extra, curves


def train_and_evaluate(config: Config, run_dir: str | Path) -> dict:
    """Trains ``config.model``, evaluates it and writes the run directory.

    Args:
        config: the run's configuration (see :func:`hml_vae.config.make_config`); its
            image shape is set from the data.
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
    check_output(run_dir)  # before loading data: fail fast
    # Before any tensor exists: logical devices and collective ops are start-up settings.
    distribution = distribute.setup(config)
    data, gray, config = load_data_and_gray(config)
    check_family_can_train(config, data, distribution)
    writer = RunWriter(run_dir, config, same=same_training)
    writer.check()
    # The resolved config (image shape, likelihood, ...) once every check has passed, so
    # that a user's mistake is the last and only line of a failed command.
    print(f"config: {config.to_json()}", file=sys.stderr)
    keras.utils.set_random_seed(config.seed)  # the same initial weights on every worker
    models = build_and_compile(config, distribution.strategy)

    if not distribution.is_chief:
        with worker_dir(run_dir, distribution.task) as work_dir:
            print(f"{distribution.describe()}; checkpoints in {work_dir} (removed at the "
                  f"end); the chief writes {run_dir}", file=sys.stderr)
            writer.work_dir = work_dir
            writer.save_identity()
            trainer = Trainer(config, data, writer, distribution.replicas)
            with writer.stop_on_signal(), distribution.strategy.scope():
                train_models(config, models, trainer)
        return {}

    writer.start()
    print(f"Training {config.model} on {len(data.train)} images of {data.describe()}; "
          f"{config.family.describe(config)}; {distribution.describe()}; run directory "
          f"{run_dir}", file=sys.stderr)
    trainer = Trainer(config, data, writer, distribution.replicas)
    started = time.perf_counter()
    with writer.stop_on_signal(), distribution.strategy.scope():
        models, extra, curves = train_models(config, models, trainer)
    wall_seconds = time.perf_counter() - started
    if curves is not None:
        writer.write_json("history.json", curves)
    models.save(writer.work_dir)
    if distribution.name != "default":
        # Evaluate on one device, outside the strategy: under multi_worker, predict() would
        # wait for collectives from workers that have finished.
        models = families.load_bundle(config, writer.work_dir)
    history = writer.stage_history()
    metrics = evaluate(config, models, data, gray)
    metrics.update(extra)
    metrics.update(
        # Summed epoch times of every stage and attempt, so a resumed run counts them all.
        # Every stage's history (greedy's history.json holds only curves, no seconds).
        train_seconds=sum(sum(writer.read_json(path.name, {}).get("epoch_seconds", []))
                          for path in sorted(writer.work_dir.glob("history*.json"))),
        wall_seconds=wall_seconds,
        epochs_trained=len(history.get("epoch", [])),
        train_images=len(data.train),
        data_source=data.source,
        image_shape=list(config.image_shape),
        strategy=distribution.name,
        replicas=distribution.replicas,
    )
    writer.write_json("metrics.json", metrics)
    failures = plot_run(writer.work_dir, config, models, data, history, metrics)
    for name, why in failures.items():
        print(f"warning: figure {name} could not be made: {why}", file=sys.stderr)
    writer.finish()
    return metrics


def evaluate_run(run_dir: str | Path, iwae_samples: int | None = None, **locations) -> dict:
    """Reloads a finished run, evaluates it again and updates its ``metrics.json``
    atomically (keys not recomputed, such as training times, are kept).

    Args:
        run_dir: a directory written by :func:`train_and_evaluate`.
        iwae_samples: K for the importance-weighted estimate (default: the run's config).
        locations: where the run's data are now (:func:`relocate_data`), when they moved.

    Returns:
        The updated metrics.
    """
    run = load_run(run_dir)
    config = run.config
    if iwae_samples is not None:
        config = dataclasses.replace(config, iwae_samples=iwae_samples)  # validates K
    data, gray, config = load_run_data(config, **locations)
    keras.utils.set_random_seed(config.seed)
    metrics = {**run.metrics, **evaluate(config, run.load_models(), data, gray),
               "data_source": data.source}  # where the data were read this time
    write_json(run.directory / "metrics.json", metrics)
    return metrics
