"""The containers every source produces: a Dataset of three Splits, in memory or streamed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from hml_vae.data.pipeline import make_pipeline, stream_pipeline
from hml_vae.errors import DataError  # its home is hml_vae.errors; imported from here too


class Split:
    """One part of a data set: float32 images in [0, 1] of shape (N, H, W, C), int64 labels.

    A split is either in memory (a NumPy array, :attr:`images`) or streamed (read from its
    files on demand, see :class:`hml_vae.data.readers.Stream`). Both kinds answer
    :meth:`head`, :meth:`batches` and :meth:`pipeline` with the same images in the same
    order, so code that sticks to those three works on data sets of any size.

    Args:
        images: float32 (N, H, W, C) in [0, 1]; None for a streamed split.
        labels: (N,) integer class indices, or None when the source has no labels.
        stream: the images of a streamed split (instead of ``images``).

    Example:
        >>> split = Split(np.zeros((10, 28, 28, 1), np.float32), np.arange(10))
        >>> len(split), split.image_shape, split.in_memory
        (10, (28, 28, 1), True)
    """

    def __init__(self, images: np.ndarray | None = None, labels: np.ndarray | None = None,
                 *, stream=None):
        if (images is None) == (stream is None):
            raise ValueError("a Split needs exactly one of images (in memory) or stream.")
        self._images = images
        self._stream = stream
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and len(self.labels) != len(self):
            raise ValueError(
                f"a Split of {len(self)} images got {len(self.labels)} labels; give one label "
                f"per image, or None.")

    def __len__(self) -> int:
        return len(self._images) if self._stream is None else self._stream.count

    def __repr__(self) -> str:
        kind = "in memory" if self.in_memory else "streamed"
        return f"Split({len(self)} images of {self.image_shape}, {kind})"

    def binarized(self, seed: int) -> Split:
        """Every pixel drawn once from Bernoulli(intensity) with ``seed`` (static)."""
        from hml_vae.data.pipeline import binarize_static

        if self.in_memory:
            return Split(binarize_static(self._images, seed), self.labels)
        return Split(labels=self.labels, stream=self._stream.binarized(seed))

    @property
    def in_memory(self) -> bool:
        return self._stream is None

    @property
    def image_shape(self) -> tuple[int, ...]:
        if self._stream is None:
            return tuple(int(size) for size in self._images.shape[1:])
        return self._stream.image_shape

    @property
    def images(self) -> np.ndarray:
        """The float32 array of an in-memory split.

        Raises:
            DataError: for a streamed split, which never holds all its images at once.
        """
        if self._stream is None:
            return self._images
        raise DataError(
            f"this split of {len(self)} images is streamed from {self._stream.where}, not "
            f"held in memory; use split.batches(batch_size) or split.head(count), or load "
            f"the data set with streaming='memory' if it fits.")

    def head(self, count: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The first ``count`` images (fewer if the split is smaller), always in memory.

        Returns:
            (float32 images (n, H, W, C), int64 labels (n,) or None).
        """
        count = max(0, min(int(count), len(self)))
        labels = None if self.labels is None else self.labels[:count]
        if self._stream is None:
            return self._images[:count], labels
        if count == 0:
            return np.zeros((0, *self.image_shape), np.float32), labels
        images = next(iter(self._stream.images().take(count).batch(count)))
        return images.numpy(), labels

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Every image once, in the split's fixed order, as float32 batches (for evaluation).

        The last batch holds the remainder, so it may be smaller than ``batch_size``.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if self._stream is None:
            for start in range(0, len(self), batch_size):
                yield self._images[start : start + batch_size]
            return
        import tensorflow as tf

        dataset = self._stream.images().batch(batch_size).prefetch(tf.data.AUTOTUNE)
        yield from dataset.as_numpy_iterator()

    def pipeline(self, batch_size: int, shuffle: bool = False, seed: int = 42,
                 binarize: str = "none", full_batches: bool = False, first_epoch=0,
                 epochs: int | None = 1):
        """A ``tf.data`` pipeline of ``(x, x)`` batches with a known length, for ``fit``.

        In memory this is :func:`make_pipeline`; streamed, the images are read, shuffled
        and batched on the fly (:func:`hml_vae.data.pipeline.stream_pipeline`). The
        arguments mean the same in both cases.
        """
        arguments = {"shuffle": shuffle, "seed": seed, "binarize": binarize,
                     "full_batches": full_batches, "first_epoch": first_epoch,
                     "epochs": epochs}
        if self._stream is None:
            return make_pipeline(self._images, batch_size, **arguments)
        return stream_pipeline(self._stream, batch_size, **arguments)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits of one source, and where they came from.

    Attributes:
        name: the tensorflow-datasets or IDX name, or the folder's / .npz file's name.
        source: where the images were read from (a directory, a file, tensorflow-datasets).
        train, valid, test: the three :class:`Split` objects.
        image_shape: (height, width, channels) of every image; taken from ``train`` when
            not given.
        class_names: one name per label value, or None when the source has no labels.
    """

    name: str
    source: str
    train: Split
    valid: Split
    test: Split
    image_shape: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        # Frozen: the derived defaults are set through object.__setattr__.
        if self.image_shape is None:
            object.__setattr__(self, "image_shape", self.train.image_shape)
        object.__setattr__(self, "image_shape", tuple(int(size) for size in self.image_shape))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))

    @property
    def num_classes(self) -> int:
        return 0 if self.class_names is None else len(self.class_names)

    def binarized(self, binarize: str, seed: int) -> Dataset:
        """The data set as ``load_dataset(..., binarize=binarize, seed=seed)`` returns it,
        from one loaded gray: a run knows whether to binarize only once its image shape
        (and so its likelihood) is known. ``dynamic`` leaves the training images gray for
        the pipeline to redraw every epoch."""
        if binarize == "none":
            return self
        return dataclasses.replace(
            self, train=self.train.binarized(seed) if binarize == "static" else self.train,
            valid=self.valid.binarized(seed), test=self.test.binarized(seed))

    def describe(self) -> str:
        """One line for logs, e.g. ``fashion_mnist (28×28×1) from /usr/share/...: 55,000
        train, 5,000 valid, 10,000 test``."""
        shape = "×".join(str(size) for size in self.image_shape)
        parts = []
        for label, split in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            parts.append(f"{len(split):,} {label}" + ("" if split.in_memory else " (streamed)"))
        return f"{self.name} ({shape}) from {self.source}: {', '.join(parts)}"
