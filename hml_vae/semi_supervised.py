"""Semi-supervised classification: how much does a pretrained encoder buy with N labels?

For every label budget and seed, a class-balanced labeled subset of the training split is
drawn with the seed and divided into its own class-balanced training and validation parts
(the validation part stops training early; the test set is only ever used to report
accuracy). On those labels four methods are trained and tested:

- ``pretrained_frozen``: the run's encoder, frozen, with a new head (phase 1);
- ``pretrained_fine_tuned``: the same classifier after phase 2, all layers trained at a
  lower learning rate (kept at phase 1's weights if fine-tuning never lowers the
  validation loss);
- ``scratch``: the same architecture with fresh weights, every layer trained from the start;
- ``logistic_regression``: scikit-learn on the frozen (standardised) codings, its
  regularisation strength chosen on the validation part.

Any finished run works, whatever its image shape and the number of classes of its data set
(chance is 1 / number of classes); the data set must have labels. The output directory is
written by :class:`hml_vae.runs.RunWriter`: it appears only when finished, and an
interrupted experiment (SIGINT/SIGTERM stop it after the cell under way) resumes with the
next unfinished (budget, seed) cell when the same command runs again.

Example:
    >>> settings = ExperimentSettings(budgets=(100, 1000), seeds=(0, 1, 2))
    >>> results = run_experiment("runs/stacked", settings, "runs/semi-stacked")
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from hml_vae import data as data_lib
from hml_vae.errors import Interrupted
from hml_vae.runs import RunWriter, load_run

METHODS = ("pretrained_frozen", "pretrained_fine_tuned", "scratch", "logistic_regression")
RESULT_FILES = ("results.json", "results.md", "accuracy_vs_labels.png")
# The experiment's identity (settings and encoder run), and the rows of the finished cells
# while it runs.
SETTINGS_FILE = "settings.json"
CELLS_FILE = "cells.json"
# TensorBoard logs: logs/labels_<budget>_seed_<seed>/<method> for each trained method.
LOGS_DIR = "logs"
OUTPUT_FILES = (SETTINGS_FILE, *RESULT_FILES, LOGS_DIR)
# Inverse regularisation strengths tried for the logistic-regression baseline.
LOGISTIC_C_GRID = (0.01, 0.1, 1.0, 10.0)
MIN_STEPS_PER_EPOCH = 25


@dataclasses.dataclass(frozen=True)
class ExperimentSettings:
    """Budgets, seeds and the two-phase training recipe of one experiment.

    Attributes:
        budgets: labeled examples per run (training + validation part), class-balanced.
        seeds: one labeled subset and one weight initialisation per seed.
        validation_fraction: share of each class's labels held out for early stopping.
        head_units: hidden sizes of the classifier head.
        batch_size: labeled examples per step.
        frozen_epochs, frozen_learning_rate: phase 1 (head only); ``scratch`` trains with
            this learning rate for frozen_epochs + fine_tune_epochs.
        fine_tune_epochs, fine_tune_learning_rate: phase 2 (all layers).
        patience: epochs without a lower validation loss before a phase stops.
        limit: use the first N training (and proportionally fewer test) images; default:
            the encoder run's.
        data_dir: where the data set is; default: the encoder run's.
    """

    budgets: tuple[int, ...] = (100, 300, 1000, 3000)
    seeds: tuple[int, ...] = (0, 1, 2)
    validation_fraction: float = 0.2
    head_units: tuple[int, ...] = (64,)
    batch_size: int = 32
    frozen_epochs: int = 50
    frozen_learning_rate: float = 1e-3
    fine_tune_epochs: int = 50
    fine_tune_learning_rate: float = 1e-4
    patience: int = 10
    limit: int | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets", tuple(self.budgets))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "head_units", tuple(self.head_units))
        validate_settings(self)


def validate_settings(settings: ExperimentSettings) -> None:
    """Raises ValueError for settings no experiment can run with (data not needed)."""
    if not settings.budgets or any(
        isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0
        for budget in settings.budgets
    ):
        raise ValueError(f"label budgets must be positive integers, got "
                         f"{list(settings.budgets)}; e.g. --labels 100,300,1000,3000.")
    if not settings.seeds or len(set(settings.seeds)) != len(settings.seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {list(settings.seeds)}.")
    if not 0 < settings.validation_fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1), got "
                         f"{settings.validation_fraction!r}; e.g. 0.2.")
    for name in ("batch_size", "frozen_epochs", "fine_tune_epochs", "patience",
                 "frozen_learning_rate", "fine_tune_learning_rate"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name.replace('_', ' ')} must be positive, got {value!r}.")
    if any(isinstance(units, bool) or not isinstance(units, int) or units <= 0
           for units in settings.head_units):
        raise ValueError(f"head sizes must be positive integers, got "
                         f"{list(settings.head_units)}; e.g. --head 64, or --head 0 for none.")
    if settings.limit is not None and settings.limit <= 0:
        raise ValueError(f"limit must be a positive number of images, got {settings.limit}.")


# --- Label budgets ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabelSplit:
    """Indices into the training split: the labeled training part and its validation part."""

    train: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.train) + len(self.valid)


def class_counts(budget: int, num_classes: int, seed: int) -> np.ndarray:
    """Labels per class for a class-balanced budget: ``budget // num_classes`` each, and
    the remainder given one by one to classes chosen with ``seed``."""
    counts = np.full(num_classes, budget // num_classes)
    extra = np.random.default_rng(seed).permutation(num_classes)[: budget % num_classes]
    counts[extra] += 1
    return counts


def validation_count(count: int, validation_fraction: float) -> int:
    """How many of a class's ``count`` labels validate: the fraction, rounded, and at least
    one, leaving at least one to train on (needs count >= 2)."""
    return int(min(count - 1, max(1, round(count * validation_fraction))))


def check_budget(budget: int, labels: np.ndarray, num_classes: int) -> None:
    """Raises ValueError when ``budget`` cannot be drawn class-balanced from ``labels``.

    Every class needs two labels (one to train on, one to validate with), the budget
    cannot exceed the training set, and each class must hold its share.
    """
    if budget < num_classes:
        raise ValueError(
            f"a budget of {budget} labels is smaller than the {num_classes} classes; a "
            f"class-balanced budget needs at least one label per class (and "
            f"{2 * num_classes} for one training and one validation label each)."
        )
    if budget < 2 * num_classes:
        raise ValueError(
            f"a budget of {budget} labels leaves some of the {num_classes} classes with one "
            f"label, but each needs one to train on and one to validate with (early "
            f"stopping); pass at least {2 * num_classes}."
        )
    if budget > len(labels):
        raise ValueError(
            f"a budget of {budget} labels is larger than the training set of {len(labels)} "
            f"images; pass budgets up to {len(labels)} (or a larger --limit)."
        )
    available = np.bincount(labels, minlength=num_classes)
    needed = -(-budget // num_classes)  # the largest share, rounded up
    short = [cls for cls in range(num_classes) if available[cls] < needed]
    if short:
        raise ValueError(
            f"a class-balanced budget of {budget} labels needs up to {needed} images per "
            f"class, but class {short[0]} has only {available[short[0]]} in the training "
            f"set of {len(labels)}; pass a smaller budget (or a larger --limit)."
        )


def choose_labels(labels: np.ndarray, budget: int, seed: int, num_classes: int | None = None,
                  validation_fraction: float = 0.2) -> LabelSplit:
    """A class-balanced labeled subset of ``labels``, drawn with ``seed``.

    Per class, the images are shuffled once with the seed and the first ones taken, so with
    one seed a larger budget contains the smaller ones. Each class's share is then split
    into validation (``validation_fraction``, at least one) and training labels.

    Args:
        labels: (N,) integer labels of the pool (the training split).
        budget: labeled examples in all (training + validation part).
        seed: the same seed gives the same subset.
        num_classes: classes 0..num_classes-1 (default: up to the largest label).
        validation_fraction: share of each class held out for early stopping.

    Returns:
        :class:`LabelSplit` of sorted, disjoint indices into ``labels``.

    Example:
        >>> split = choose_labels(data.train.labels, 100, seed=0)
        >>> len(split.train), len(split.valid)
        (80, 20)
    """
    labels = np.asarray(labels)
    if num_classes is None:
        num_classes = int(labels.max(initial=-1)) + 1
    check_budget(budget, labels, num_classes)
    rng = np.random.default_rng(seed)
    counts = class_counts(budget, num_classes, seed)
    train, valid = [], []
    for cls in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == cls))[: counts[cls]]
        held_out = validation_count(counts[cls], validation_fraction)
        valid.append(members[:held_out])
        train.append(members[held_out:])
    return LabelSplit(np.sort(np.concatenate(train)), np.sort(np.concatenate(valid)))


# --- Training ---------------------------------------------------------------------------


def _keep_best_callback(initial_loss: float, initial_weights, patience: int):
    """A Keras callback that stops after ``patience`` epochs without a lower ``val_loss``
    and leaves the model at its best weights, counting the starting point as a candidate
    (so a phase that only makes things worse changes nothing)."""
    import keras

    class KeepBest(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best_loss, self.best_weights = initial_loss, initial_weights
            self.best_epoch, self.epochs_run, self.waited = 0, 0, 0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs_run = epoch + 1
            loss = float((logs or {}).get("val_loss", np.inf))
            if loss < self.best_loss:
                self.best_loss, self.best_weights = loss, self.model.get_weights()
                self.best_epoch, self.waited = epoch + 1, 0
            else:
                self.waited += 1
                if self.waited >= patience:
                    self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return KeepBest()


def predict_batches(model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """``model``'s outputs for ``images`` (class probabilities of a classifier, codings of
    an encoder), computed batch by batch in inference mode.

    Direct calls rather than ``predict``: the experiment evaluates many models on arrays
    of many sizes, and ``predict`` would trace a new function for each.
    """
    return np.concatenate([np.asarray(model(images[start : start + batch_size],
                                            training=False))
                           for start in range(0, len(images), batch_size)])


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the labels (clipped as Keras clips it)."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


def accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``images`` whose most probable class is their label."""
    return float(np.mean(np.argmax(predict_batches(model, images), axis=1) == labels))


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Batches per epoch: one pass over the labeled examples, but at least
    :data:`MIN_STEPS_PER_EPOCH`, so that with 80 labels an epoch (and the validation
    after it) is not three steps of Keras overhead."""
    return max(-(-examples // batch_size), MIN_STEPS_PER_EPOCH)


def training_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """Endless shuffled (image, label) batches; reshuffled every pass, with ``seed``."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).cache()
    dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat().batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit_phase(model, train: tuple, valid: tuple, epochs: int, learning_rate: float,
              patience: int, batch_size: int, seed: int, log_dir: Path | None = None) -> dict:
    """Compiles ``model`` (Adam, sparse cross-entropy) and fits it with early stopping on
    the validation loss, ending at the best epoch's weights (or the starting weights if no
    epoch beat them).

    Args:
        model: a classifier; freeze layers before calling.
        train, valid: (images, labels) arrays.
        epochs: at most this many epochs of :func:`steps_per_epoch` batches.
        seed: the order of the batches.
        log_dir: where TensorBoard logs the phase's losses per epoch (none when None).

    Returns:
        {"epochs_run", "best_epoch" (0: the starting weights), "valid_loss"}.
    """
    import keras

    from hml_vae.tensorboard import ScalarLogger

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)  # one trace, not two: compile_model
    start_loss = cross_entropy(predict_batches(model, valid[0]), valid[1])
    keep_best = _keep_best_callback(start_loss, model.get_weights(), patience)
    callbacks = [keep_best] if log_dir is None else [keep_best, ScalarLogger(log_dir)]
    model.fit(training_pipeline(*train, batch_size, seed), validation_data=valid,
              epochs=epochs, steps_per_epoch=steps_per_epoch(len(train[1]), batch_size),
              validation_batch_size=512, callbacks=callbacks, verbose=0,
              shuffle=False)  # the pipeline shuffles, with the seed
    return {"epochs_run": keep_best.epochs_run, "best_epoch": keep_best.best_epoch,
            "valid_loss": keep_best.best_loss}


def logistic_regression_accuracy(codings: dict, labels: dict, seed: int) -> tuple[float, dict]:
    """Logistic regression on standardised codings; C chosen by validation accuracy.

    Args:
        codings, labels: {"train", "valid", "test"} arrays.
        seed: of the solver.

    Returns:
        (test accuracy, {"C": chosen C, "valid_accuracy": its validation accuracy}).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in LOGISTIC_C_GRID:  # first (strongest regularisation) wins a tie
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000,
                                                                   random_state=seed))
        model.fit(codings["train"], labels["train"])
        score = float(model.score(codings["valid"], labels["valid"]))
        if best is None or score > best[0]:
            best = (score, c, model)
    score, c, model = best
    return float(model.score(codings["test"], labels["test"])), {"C": c, "valid_accuracy": score}


@dataclasses.dataclass(frozen=True)
class EncoderSource:
    """Where the classifiers' encoders come from: the run's trained encoder and the same
    architecture rebuilt from the run's config (for fresh weights)."""

    trained: object  # keras.Model
    config: object  # hml_vae.config.Config

    def pretrained(self):
        from hml_vae.classifier import pretrained_encoder

        return pretrained_encoder(self.trained)

    def fresh(self):
        from hml_vae import families
        from hml_vae.classifier import fresh_encoder

        return fresh_encoder(families.build(self.config).encoder)


def labeled_arrays(data: data_lib.Dataset, split: LabelSplit) -> dict[str, tuple]:
    """{"train", "valid", "test"}: (images, labels); the first two from the training split
    only, the test set whole."""
    return {
        "train": (data.train.images[split.train], data.train.labels[split.train]),
        "valid": (data.train.images[split.valid], data.train.labels[split.valid]),
        "test": (data.test.images, data.test.labels),
    }


def run_cell(source: EncoderSource, arrays: dict, settings: ExperimentSettings,
             seed: int, num_classes: int, log_dir: Path | None = None) -> dict[str, dict]:
    """Trains and tests every method on one labeled subset; with ``log_dir``, TensorBoard
    logs each trained method's phase in ``log_dir/<method>``.

    Returns:
        {method: {"test_accuracy", "valid_accuracy", "seconds", ...}} for :data:`METHODS`.
    """
    import keras

    from hml_vae.classifier import (
        build_classifier,
        coding_statistics,
        set_encoder_trainable,
    )

    def phase(model, epochs, learning_rate, phase_seed, method):
        return fit_phase(model, arrays["train"], arrays["valid"], epochs, learning_rate,
                         settings.patience, settings.batch_size, phase_seed,
                         None if log_dir is None else Path(log_dir) / method)

    def scores(model):
        return {"test_accuracy": accuracy(model, *arrays["test"]),
                "valid_accuracy": accuracy(model, *arrays["valid"])}

    def classifier_on(encoder):
        # The head standardizes codings with statistics of the labeled training images.
        stats = coding_statistics(predict_batches(encoder, arrays["train"][0]))
        return build_classifier(encoder, num_classes, settings.head_units, coding_stats=stats)

    results = {}
    started = time.perf_counter()
    encoder = source.pretrained()
    codings = {part: predict_batches(encoder, images)
               for part, (images, _) in arrays.items()}
    labels = {part: part_labels for part, (_, part_labels) in arrays.items()}
    test_accuracy, details = logistic_regression_accuracy(codings, labels, seed)
    results["logistic_regression"] = {"test_accuracy": test_accuracy, **details,
                                      "seconds": time.perf_counter() - started}

    started = time.perf_counter()
    keras.utils.set_random_seed(seed)  # the head's initial weights
    classifier = classifier_on(encoder)
    set_encoder_trainable(classifier, False)
    frozen = phase(classifier, settings.frozen_epochs, settings.frozen_learning_rate, seed,
                   "pretrained_frozen")
    results["pretrained_frozen"] = {**scores(classifier), **frozen,
                                    "seconds": time.perf_counter() - started}

    started = time.perf_counter()
    set_encoder_trainable(classifier, True)
    tuned = phase(classifier, settings.fine_tune_epochs, settings.fine_tune_learning_rate,
                  seed + 1, "pretrained_fine_tuned")
    results["pretrained_fine_tuned"] = {**scores(classifier), **tuned,
                                        "seconds": time.perf_counter() - started}

    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    scratch = classifier_on(source.fresh())
    trained = phase(scratch, settings.frozen_epochs + settings.fine_tune_epochs,
                    settings.frozen_learning_rate, seed, "scratch")
    results["scratch"] = {**scores(scratch), **trained,
                          "seconds": time.perf_counter() - started}
    return {method: results[method] for method in METHODS}


# --- Summaries --------------------------------------------------------------------------


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation (n - 1; 0 for one seed) of the test accuracy per
    budget and method, in budget order then :data:`METHODS` order."""
    summary = []
    budgets = sorted({row["budget"] for row in rows})
    for budget in budgets:
        for method in METHODS:
            values = [row["test_accuracy"] for row in rows
                      if row["budget"] == budget and row["method"] == method]
            if not values:
                continue
            summary.append({
                "budget": budget, "method": method, "runs": len(values),
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            })
    return summary


def results_markdown(report: dict) -> str:
    """``results.md``: mean ± std test accuracy (%) per budget (rows) and method (columns)."""
    summary = report["summary"]
    methods = [method for method in METHODS if any(row["method"] == method for row in summary)]
    lines = [
        f"# Semi-supervised classification: `{report['encoder_run']}` "
        f"({report['encoder_model']})",
        "",
        f"Test accuracy (%) on {report['test_images']} {report['dataset']} test images, mean ± "
        f"std over seeds {', '.join(map(str, report['settings']['seeds']))}. Labels drawn "
        f"class-balanced from the {report['train_pool']} training images; "
        f"{report['settings']['validation_fraction']:.0%} of each budget validates (early "
        f"stopping, logistic-regression C), the rest trains. Chance: "
        f"{100 * report['chance']:.1f}% ({report['num_classes']} classes).",
        "",
        "| labels | " + " | ".join(methods) + " |",
        "|---:|" + "---:|" * len(methods),
    ]
    for budget in sorted({row["budget"] for row in summary}):
        cells = {row["method"]: row for row in summary if row["budget"] == budget}
        lines.append(f"| {budget:,} | " + " | ".join(
            f"{100 * cells[method]['mean']:.1f} ± {100 * cells[method]['std']:.1f}"
            if method in cells else "" for method in methods) + " |")
    lines += ["", "Methods: " + "; ".join(f"`{method}`: {METHOD_DESCRIPTIONS[method]}"
                                          for method in methods) + "."]
    return "\n".join(lines) + "\n"


METHOD_DESCRIPTIONS = {
    "pretrained_frozen": "the run's encoder frozen, the head trained (phase 1)",
    "pretrained_fine_tuned": "then every layer trained at the lower learning rate (phase 2)",
    "scratch": "the same architecture with fresh weights, every layer trained",
    "logistic_regression": "scikit-learn on the frozen, standardised codings",
}


# --- The experiment ---------------------------------------------------------------------


def check_input_shape(encoder, image_shape: tuple[int, ...], run_dir: Path) -> None:
    """Raises ValueError when the encoder does not take images shaped like the data's."""
    expected = tuple(encoder.input_shape[1:])
    given = tuple(image_shape)
    if expected != given:
        raise ValueError(
            f"the encoder of {run_dir} takes inputs of shape {expected}, but the data set's "
            f"images have shape {given}; pass a run trained on this data set's images."
        )


def check_labels(data: data_lib.Dataset, run_dir: Path) -> None:
    """Raises ValueError unless the data set has labels of at least two classes."""
    unlabeled = any(split.labels is None for split in (data.train, data.test))
    if unlabeled or not data.num_classes:
        raise ValueError(
            f"the data set of {run_dir} ({data.name}, from {data.source}) has no labels, and "
            f"the experiment draws its budgets from labels and tests on them. Pass a run "
            f"trained on labeled images (a named data set, an image folder with one "
            f"subfolder per class, or an .npz file with 'labels')."
        )
    if data.num_classes < 2:
        raise ValueError(f"the data set of {run_dir} ({data.name}) has one class; a classifier "
                         f"needs at least two.")


def load_data(run, settings: ExperimentSettings) -> data_lib.Dataset:
    """The encoder run's data set, read as its config describes it, with gray images.

    Every method classifies the images themselves: a Bernoulli VAE trained on binarized
    images sees its pixels' expected values. ``settings.limit`` and ``settings.data_dir``
    override the run's. The images are held in memory: labeled subsets are drawn at random
    and the whole test set is classified.
    """
    overrides = {"binarize": "none", "streaming": "memory"}
    if settings.limit is not None:
        overrides["limit"] = settings.limit
    if settings.data_dir is not None:
        overrides["data_dir"] = settings.data_dir
    return data_lib.load_for_config(dataclasses.replace(run.config, **overrides))


def experiment_identity(run, settings: ExperimentSettings) -> dict:
    """What ``settings.json`` records: the settings and the encoder run (its absolute path
    and config). An interrupted experiment resumes only when all of it is the same."""
    identity = {
        "settings": dataclasses.asdict(settings),
        "encoder_run": str(Path(run.directory).resolve()),
        "encoder_config": run.config.to_dict(),
    }
    return json.loads(json.dumps(identity))  # tuples as lists, as the saved file reads back


@dataclasses.dataclass
class Experiment:
    """One experiment after every check: the encoder run, its data, the encoders and the
    writer of the output directory (not started yet)."""

    run: object  # hml_vae.runs.Run
    data: data_lib.Dataset
    source: EncoderSource
    writer: RunWriter
    settings: ExperimentSettings

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def cells(self) -> list[tuple[int, int]]:
        """(budget, seed) pairs in the order they run."""
        return [(budget, seed) for budget in self.settings.budgets
                for seed in self.settings.seeds]


def prepare(run_dir: str | Path, settings: ExperimentSettings,
            output: str | Path) -> Experiment:
    """Every check that can fail before training: the run, the output (a new directory, or
    an interrupted experiment with the same identity), the data and its labels, the
    budgets and the encoder's input shape. Nothing is written.

    Raises:
        RunError: ``run_dir`` is not a finished run, or ``output`` cannot be written.
        ValueError / DataError: a budget that cannot be drawn, data that do not fit.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)  # RunError unless the run (and its encoder) finished
    writer = RunWriter(output, experiment_identity(run, settings),
                       identity_file=SETTINGS_FILE)
    writer.check()
    data = load_data(run, settings)
    check_labels(data, run_dir)
    for budget in settings.budgets:
        check_budget(budget, data.train.labels, data.num_classes)
    encoder = run.load_models().encoder
    check_input_shape(encoder, data.image_shape, run_dir)
    return Experiment(run, data, EncoderSource(trained=encoder, config=run.config), writer,
                      settings)


def run_budget_seed(experiment: Experiment, budget: int, seed: int) -> list[dict]:
    """The result rows (one per method) of one cell of the experiment."""
    data, settings = experiment.data, experiment.settings
    split = choose_labels(data.train.labels, budget, seed, experiment.num_classes,
                          settings.validation_fraction)
    log_dir = experiment.writer.path(LOGS_DIR) / f"labels_{budget}_seed_{seed}"
    # An interrupted cell is redone from its start, and so are its logs.
    shutil.rmtree(log_dir, ignore_errors=True)
    results = run_cell(experiment.source, labeled_arrays(data, split), settings, seed,
                       experiment.num_classes, log_dir)
    return [{"budget": budget, "seed": seed, "method": method,
             "train_labels": len(split.train), "valid_labels": len(split.valid), **values}
            for method, values in results.items()]


def finished_cells(writer: RunWriter) -> dict[tuple[int, int], list[dict]]:
    """{(budget, seed): rows} of the cells an interrupted experiment finished."""
    return {(cell["budget"], cell["seed"]): cell["rows"]
            for cell in writer.read_json(CELLS_FILE, default=[])}


def save_cells(writer: RunWriter, done: dict[tuple[int, int], list[dict]]) -> None:
    writer.write_json(CELLS_FILE, [{"budget": budget, "seed": seed, "rows": rows}
                                   for (budget, seed), rows in done.items()])


def run_experiment(run_dir: str | Path, settings: ExperimentSettings,
                   output: str | Path, log=print) -> dict:
    """Every budget x seed x method; writes ``output`` with :data:`OUTPUT_FILES`.

    The output is written by :class:`hml_vae.runs.RunWriter`: built as
    ``<output>.incomplete`` and renamed when everything is written. After each
    (budget, seed) cell its rows are saved (``cells.json``), so the same command after an
    interruption skips the finished cells. SIGINT/SIGTERM let the cell under way finish,
    then stop.

    Args:
        run_dir: a finished run (any family) whose encoder is used.
        settings: budgets, seeds and the training recipe.
        output: directory to create; must not exist (its ``.incomplete`` directory may, when
            it was left by the same experiment).
        log: called with the settings once every check has passed, then one progress
            line per cell.

    Returns:
        The report written to ``results.json``.

    Raises:
        Interrupted: a signal stopped the experiment after a finished cell.
    """
    from hml_vae.plots import accuracy_vs_labels

    experiment = prepare(run_dir, settings, output)
    run, data, writer = experiment.run, experiment.data, experiment.writer
    log(f"settings: {settings}")
    writer.start()
    cells = experiment.cells()
    done = finished_cells(writer)
    if done:
        log(f"{len(done)} of {len(cells)} cells already finished in "
            f"{writer.path(CELLS_FILE)}; running the others")
    with writer.stop_on_signal("the (budget, seed) cell under way"):
        for budget, seed in cells:
            if (budget, seed) in done:
                continue
            rows = run_budget_seed(experiment, budget, seed)
            done[(budget, seed)] = rows
            save_cells(writer, done)
            log(f"labels {budget:>6} seed {seed}: " + ", ".join(
                f"{row['method']} {row['test_accuracy']:.3f}" for row in rows))
            received = writer.stop_requested
            if received is not None:
                raise Interrupted(
                    f"{received.name} stopped the experiment after {len(done)} of "
                    f"{len(cells)} cells (labels {budget}, seed {seed} was the last); the "
                    f"finished ones are saved in {writer.path(CELLS_FILE)}. Run the same "
                    f"command again to resume with the next cell.", received.value)
    rows = [row for cell in cells for row in done[cell]]
    report = {
        "encoder_run": str(run.directory),
        "encoder_model": run.config.model,
        "encoder_config": run.config.to_dict(),
        "dataset": data.name,
        "data_source": data.source,
        "image_shape": list(data.image_shape),
        "num_classes": experiment.num_classes,
        "chance": 1 / experiment.num_classes,
        "train_pool": len(data.train),
        "test_images": len(data.test),
        "settings": dataclasses.asdict(settings),
        "methods": list(METHODS),
        "results": rows,
        "summary": summarize(rows),
    }
    writer.write_json("results.json", report)
    writer.path("results.md").write_text(results_markdown(report))
    figure = accuracy_vs_labels(report["summary"], experiment.num_classes,
                                title=f"{run.config.model} encoder ({run.directory.name})")
    figure.savefig(writer.path("accuracy_vs_labels.png"), dpi=100)
    writer.path(CELLS_FILE).unlink()  # its rows are in results.json
    writer.finish()
    return report


def log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
