"""TensorBoard logs of every training stage: scalars and per-epoch images.

Each ``fit`` of a run writes into its stage's log directory (``RUN/logs`` for a run's one
fit, ``RUN/logs/<stage>`` for greedy levels, the fine-tuning and the semi-supervised
phases), which TensorBoard shows as runs ``<stage>/train``, ``<stage>/validation`` and
``<stage>/images``:

- :class:`ScalarLogger` (``keras.callbacks.TensorBoard``): ``epoch_<name>`` for every
  value in the epoch's logs (``loss``; VAEs also ``reconstruction_nll``, ``kl``, ``beta``)
  and ``epoch_learning_rate`` in ``train/``, the validation values in ``validation/``;
- :class:`ImageLogger`: ``reconstructions`` (a fixed set of validation images above what
  the model makes of them) and, for VAEs, ``prior_samples`` (images decoded from fixed
  prior draws), in the images' own colours.

Every summary's step is the epoch (0-based), so a resumed stage continues its curves: the
first epoch a process trains removes from the stage's event files whatever an earlier
process logged from that epoch on (an epoch logged but not checkpointed before a kill is
redone), and each epoch's events are flushed before its checkpoint is written. Writers
are closed when ``fit`` ends, so nothing holds a file when the run directory is renamed.

Example:
    >>> model.fit(x, epochs=5, callbacks=[ScalarLogger("runs/demo/logs")])
    $ tensorboard --logdir runs
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

# How many validation images the reconstructions show, and how many prior draws (VAEs).
IMAGE_COUNT = 8
SAMPLE_COUNT = 16
EVENT_FILE_MARK = "tfevents"  # what TensorBoard looks for in an event file's name


def event_files(directory: Path) -> list[Path]:
    """The TensorBoard event files under ``directory`` (any depth), sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.rglob(f"*{EVENT_FILE_MARK}*") if path.is_file())


def prune_events(directory: Path, first_step: int) -> None:
    """Removes every summary at step >= ``first_step`` from the event files under
    ``directory``, so that a stage resumed at epoch ``first_step`` logs each epoch once.

    Files are rewritten whole through a temporary file (named without ``tfevents``, so
    TensorBoard never reads it); one left without summaries is removed. A record cut short
    by a kill ends the file's readable part.
    """
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    for path in event_files(directory):
        records = [(record, Event.FromString(record))
                   for record in RawEventFileLoader(str(path)).Load()]
        kept = [(record, event) for record, event in records
                if not event.HasField("summary") or event.step < first_step]
        if len(kept) == len(records):
            continue
        if not any(event.HasField("summary") for _, event in kept):
            path.unlink()
            continue
        temporary = path.with_name(f".pruning-{os.getpid()}")
        with tf.io.TFRecordWriter(str(temporary)) as writer:
            for record, _ in kept:
                writer.write(record)
        temporary.replace(path)


class _ResumeOnce:
    """Prunes a log directory at the first epoch a ``fit`` trains (see the module)."""

    def _start_fit(self) -> None:
        self._pruned = False

    def _prune_once(self, directories: list, epoch: int) -> None:
        if not self._pruned:
            for directory in directories:
                prune_events(Path(directory), epoch)
            self._pruned = True


class ScalarLogger(_ResumeOnce, keras.callbacks.TensorBoard):
    """``keras.callbacks.TensorBoard`` with one step per epoch that continues on resume.

    No graph (a second write at step 0 on every resume) and no per-iteration copy of the
    validation values (a second x-axis for the same numbers).
    """

    def __init__(self, log_dir: str | Path):
        super().__init__(log_dir=str(log_dir), write_graph=False, update_freq="epoch")

    def on_train_begin(self, logs=None):
        self._start_fit()
        super().on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        # Before this fit opens a writer (writers are created at the first summary).
        self._prune_once([self._train_dir, self._val_dir], epoch)
        super().on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()  # before the epoch's checkpoint: a resume starts after it

    def on_test_end(self, logs=None):
        pass  # validation is logged per epoch by on_epoch_end


@dataclasses.dataclass(frozen=True)
class EpochImages:
    """What :class:`ImageLogger` draws every epoch.

    Attributes:
        originals: fixed validation images (n, H, W, C) in [0, 1].
        reconstruct: images -> reconstructions of the same shape, with the current weights.
        generate: () -> images decoded from fixed prior draws (VAEs), or None.
    """

    originals: np.ndarray
    reconstruct: Callable[[np.ndarray], np.ndarray]
    generate: Callable[[], np.ndarray] | None = None

    @classmethod
    def of_bundle(cls, models, originals: np.ndarray, seed: int) -> EpochImages:
        """A model bundle's deterministic reconstructions and, for a VAE, ``SAMPLE_COUNT``
        images from the prior draws ``generate`` makes with ``seed``."""
        generate = None
        if models.variational:
            generate = lambda: models.generate(SAMPLE_COUNT, seed)  # noqa: E731
        return cls(np.asarray(originals[:IMAGE_COUNT], np.float32), models.reconstruct,
                   generate)


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """(n, H, W, C) -> one (rows·H, columns·W, C) picture, clipped to [0, 1]; a short last
    row is filled with black."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    padded = np.zeros((rows * columns, height, width, channels), np.float32)
    padded[:count] = images
    # (rows, columns, H, W, C) -> (rows, H, columns, W, C) -> (rows·H, columns·W, C)
    return (padded.reshape(rows, columns, height, width, channels)
            .transpose(0, 2, 1, 3, 4).reshape(rows * height, columns * width, channels))


class ImageLogger(_ResumeOnce, keras.callbacks.Callback):
    """Writes ``reconstructions`` (originals above reconstructions, one column per image)
    and, when there is a generator, ``prior_samples`` (two rows) after every epoch."""

    def __init__(self, log_dir: str | Path, images: EpochImages):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.images = images
        self._writer = None

    def on_train_begin(self, logs=None):
        self._start_fit()

    def on_epoch_begin(self, epoch, logs=None):
        self._prune_once([self.log_dir], epoch)

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        originals = self.images.originals
        pictures = {"reconstructions": image_grid(
            np.concatenate([originals, self.images.reconstruct(originals)]), len(originals))}
        if self.images.generate is not None:
            pictures["prior_samples"] = image_grid(self.images.generate(), SAMPLE_COUNT // 2)
        with self._writer.as_default():
            for tag, picture in pictures.items():
                tf.summary.image(tag, picture[np.newaxis], step=epoch)
        self._writer.flush()  # before the epoch's checkpoint, as ScalarLogger

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
