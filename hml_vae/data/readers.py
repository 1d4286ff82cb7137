"""How a source hands over its images: loaded into arrays, or streamed through tf.data.

Every source module (idx, tfds_source, folder, npz) returns a :class:`Source` whose parts
are readers. A reader knows how many images it has and their final shape, and can

- ``load(selections)``: read the chosen images into float32 arrays (memory mode);
- ``read_labels()``: every label of the part, or None;
- either ``lookup()``, a function from an index to its image (random access: folders,
  arrays), or ``sequence(indices)``, a dataset of those images in order (sequential:
  tensorflow-datasets); both give float32 ``tf`` images in [0, 1].

A :class:`Stream` is the streamed form of one split: a reader and the indices of the
split's images in it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hml_vae.data.dataset import DataError
from hml_vae.data.pipeline import binarize_by_key, epoch_order, shuffle_buffer_seed

# The smallest height and width an image may have (H, W >= 8 is part of the data contract).
MIN_SIZE = 8
# Images per batch when a reader fills an array: large enough to keep decoding parallel.
LOAD_BATCH = 256
# A sequential stream shuffles through a buffer of at most this many bytes of images.
SHUFFLE_BUFFER_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class Source:
    """What a source module found: its images (by part) and what to call them.

    Attributes:
        name: for :attr:`Dataset.name`.
        where: for :attr:`Dataset.source`.
        parts: readers keyed ``"train"``, and ``"test"`` / ``"validation"`` when the source
            has its own test or validation images.
        class_names: one name per label value, or None without labels.
        keep_order: the parts can only be read in their stored order (tensorflow-datasets),
            so every split lists its images in that order.
    """

    name: str
    where: str
    parts: dict
    class_names: tuple[str, ...] | None
    keep_order: bool = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.parts["train"].image_shape


def conform(images, image_size: tuple[int, int] | None, channels: int):
    """Scales, converts and resizes ``tf`` images: one (h, w, c) image or a batch.

    Args:
        images: uint8 (0-255) or float ([0, 1]) tensor with c = 1, 2, 3 or 4 (2 and 4 carry
            an alpha channel, which is dropped).
        image_size: (height, width) to resize to (bilinear), or None to keep the size.
        channels: 1 (grayscale) or 3 (RGB).

    Returns:
        float32 tensor in [0, 1] with ``channels`` channels.
    """
    import tensorflow as tf

    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    else:
        images = tf.cast(images, tf.float32)
    have = images.shape[-1]
    if have in (2, 4):
        images, have = images[..., : have - 1], have - 1
    if have == 1 and channels == 3:
        images = tf.image.grayscale_to_rgb(images)
    elif have == 3 and channels == 1:
        images = tf.image.rgb_to_grayscale(images)
    if image_size is not None and tuple(images.shape[-3:-1]) != tuple(image_size):
        images = tf.image.resize(images, image_size, method="bilinear")
    return images


def to_float(images: np.ndarray, image_size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """The NumPy form of :func:`conform` for a batch (N, h, w, c), in chunks.

    Without a resize or a channel conversion this is plain NumPy (``uint8 / 255``), the
    same values as :func:`conform` gives.
    """
    same_size = image_size is None or tuple(images.shape[1:3]) == tuple(image_size)
    if same_size and images.shape[-1] == channels:
        if images.dtype == np.uint8:
            return images.astype(np.float32) / 255.0
        return images.astype(np.float32)
    import tensorflow as tf

    height, width = image_size if image_size is not None else images.shape[1:3]
    result = np.empty((len(images), height, width, channels), np.float32)
    for start in range(0, len(images), LOAD_BATCH * 4):
        chunk = tf.constant(images[start : start + LOAD_BATCH * 4])
        result[start : start + len(chunk)] = conform(chunk, image_size, channels).numpy()
    return result


def materialize(dataset, count: int, image_shape: tuple[int, ...], where: str) -> np.ndarray:
    """Fills a float32 array from a ``tf.data`` dataset of ``count`` single images."""
    import tensorflow as tf

    # Preallocated and filled batch by batch: one copy of the images in memory, not two.
    result = np.empty((count, *image_shape), np.float32)
    filled = 0
    for batch in dataset.batch(LOAD_BATCH).prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        if filled + len(batch) > count:
            filled += len(batch)
            break
        result[filled : filled + len(batch)] = batch
        filled += len(batch)
    if filled != count:
        raise DataError(
            f"{where}: expected {count} images but read {'more' if filled > count else filled}; "
            f"the files changed while reading, or the copy is incomplete. Prepare it again.")
    return result


class ArrayReader:
    """Images held as a NumPy array as stored (uint8 or float): IDX files and .npz archives.

    Streamed, the array stays as stored (a quarter of the float32 size for uint8) and
    each image is converted when it is read.
    """

    random_access = True

    def __init__(self, images: np.ndarray, labels: np.ndarray | None,
                 image_size: tuple[int, int] | None, channels: int, where: str):
        self.array = images
        self.labels = labels
        self.count = len(images)
        self.image_size = image_size
        self.channels = channels
        height, width = image_size or images.shape[1:3]
        self.image_shape = (int(height), int(width), int(channels))
        self.where = where
        self._tensor = None

    def load(self, selections: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        return [(to_float(self.array[indices], self.image_size, self.channels),
                 None if self.labels is None else self.labels[indices])
                for indices in selections]

    def read_labels(self) -> np.ndarray | None:
        return self.labels

    def lookup(self):
        """A function from an index tensor to that float32 image (for ``Dataset.map``)."""
        import tensorflow as tf

        # Made eagerly, outside the traced map function, so that tf.data captures the
        # tensor rather than embedding the array in its graph; one copy for every stream.
        if self._tensor is None:
            self._tensor = tf.constant(self.array)
        tensor, image_size, channels = self._tensor, self.image_size, self.channels
        return lambda index: conform(tf.gather(tensor, index), image_size, channels)


def decode_image_file(path, image_size: tuple[int, int], channels: int):
    """One image file as float32 (H, W, C) in [0, 1], decoded the way Keras'
    ``image_dataset_from_directory`` decodes it (decode_image, then a bilinear resize)."""
    import tensorflow as tf

    image = tf.image.decode_image(tf.io.read_file(path), channels=channels,
                                  expand_animations=False)
    image = tf.image.resize(image, image_size, method="bilinear")
    image.set_shape((*image_size, channels))
    return image / 255.0


class FileReader:
    """Image files (a folder), decoded on demand in parallel."""

    random_access = True

    def __init__(self, paths: list[str], labels: np.ndarray | None,
                 image_size: tuple[int, int], channels: int, where: str):
        self.paths = np.asarray(paths, dtype=object)
        self.labels = labels
        self.count = len(paths)
        self.image_size = tuple(int(size) for size in image_size)
        self.channels = channels
        self.image_shape = (*self.image_size, int(channels))
        self.where = where

    def _decode(self, paths):
        return decode_image_file(paths, self.image_size, self.channels)

    def load(self, selections: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        import tensorflow as tf

        results = []
        for indices in selections:
            paths = tf.data.Dataset.from_tensor_slices(self.paths[indices].astype(str))
            images = paths.map(self._decode, num_parallel_calls=tf.data.AUTOTUNE)
            results.append((materialize(images, len(indices), self.image_shape, self.where),
                            None if self.labels is None else self.labels[indices]))
        return results

    def read_labels(self) -> np.ndarray | None:
        return self.labels

    def lookup(self):
        """A function from an index tensor to that float32 image (for ``Dataset.map``)."""
        import tensorflow as tf

        paths = tf.constant(self.paths.astype(str))  # eager: captured, not embedded
        return lambda index: self._decode(tf.gather(paths, index))


class Stream:
    """The streamed images of one split: a reader and the split's indices in it.

    Args:
        reader: a reader from :mod:`hml_vae.data.readers` or a source module.
        indices: int64 (n,) positions of the split's images in the reader, in split order
            (ascending for sequential readers).
        keys: int64 (n,) a number per image, unique in the source, that keys its static
            binarization.
        static_seed: binarize every image once with this seed (``binarize="static"``, and
            validation/test images with ``"dynamic"``); None leaves them gray.
    """

    def __init__(self, reader, indices: np.ndarray, keys: np.ndarray,
                 static_seed: int | None = None):
        self._reader = reader
        self._indices = np.asarray(indices, np.int64)
        self._keys = np.asarray(keys, np.int64)
        self._static_seed = static_seed
        self.count = len(self._indices)
        self.image_shape = tuple(reader.image_shape)
        self.where = reader.where

    def binarized(self, seed: int) -> Stream:
        """The same images, each binarized once with ``seed``."""
        return Stream(self._reader, self._indices, self._keys, static_seed=seed)

    def images(self):
        """A ``tf.data`` dataset of single float32 images, in split order."""
        return self.epoch_images()(0)

    def epoch_images(self, shuffle: bool = False, seed: int = 42):
        """A function from an epoch index (an int64 tensor) to a ``tf.data`` dataset of that
        epoch's single float32 images, in split order or shuffled.

        Shuffled, each epoch has its own order, a pure function of ``seed`` and the epoch's
        index (:func:`hml_vae.data.pipeline.epoch_order` for sources that can read any
        image directly; a shuffle buffer seeded by the epoch for sequential ones), so a
        pipeline started at epoch e reads what one started earlier reads in epoch e.
        """
        import tensorflow as tf

        reader = self._reader
        # Tensors and readers are made here, eagerly, and captured by the per-epoch
        # function rather than embedded in its graph.
        keys = tf.constant(self._keys)
        if reader.random_access:
            indices, read, count = tf.constant(self._indices), reader.lookup(), self.count

            def images(epoch):
                positions = (epoch_order(count, seed, epoch) if shuffle
                             else tf.range(count))
                return tf.data.Dataset.from_tensor_slices(positions).map(
                    lambda p: (tf.gather(keys, p), read(tf.gather(indices, p))),
                    num_parallel_calls=tf.data.AUTOTUNE)
        else:
            in_order = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(keys),
                                           reader.sequence(self._indices))
            image_bytes = 4 * int(np.prod(self.image_shape))
            buffer = max(1, min(self.count, SHUFFLE_BUFFER_BYTES // image_bytes))

            def images(epoch):
                if not shuffle:
                    return in_order
                return in_order.shuffle(buffer, seed=shuffle_buffer_seed(seed, epoch))

        if self._static_seed is None:
            return lambda epoch: images(epoch).map(lambda key, image: image)
        seed_for_pixels = self._static_seed
        return lambda epoch: images(epoch).map(
            lambda key, image: binarize_by_key(image, key, seed_for_pixels),
            num_parallel_calls=tf.data.AUTOTUNE)
