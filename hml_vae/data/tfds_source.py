"""tensorflow-datasets: image data sets by name, from a prepared copy or a download.

Offline (the default) a data set must already be prepared in ``TFDS_DATA_DIR`` (or tfds'
default directory, ``~/tensorflow_datasets``); ``download=True`` lets tfds download and
prepare it first, which needs network access. The data set needs an ``image`` feature of
uint8 pixels; a ``label`` ClassLabel feature, when there is one, gives the labels and
class names. Its ``train`` and ``test`` splits (and ``validation`` if it has one) are
used; tfds reads them in their stored order, which tfds shuffled when it prepared them.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os

import numpy as np

from hml_vae.data.dataset import DataError
from hml_vae.data.readers import LOAD_BATCH, MIN_SIZE, Source, conform, to_float

# The tfds split names a source part can come from, in the order parts are keyed.
PARTS = ("train", "test", "validation")


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError(
            f"tensorflow-datasets is not importable ({error}); install it with "
            f"pip install tensorflow-datasets, or read the images from a folder or .npz."
        ) from error
    return tfds


def tfds_root() -> str:
    """The directory tensorflow-datasets reads from: ``TFDS_DATA_DIR`` or its default."""
    configured = os.environ.get("TFDS_DATA_DIR")
    if configured:
        return configured
    return _import_tfds().core.constants.DATA_DIR


@contextlib.contextmanager
def quiet_tfds():
    """Silences tensorflow-datasets' warnings about the folders it looks into (absl's
    logger): whether the data set is there is reported in one line of our own."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def tfds_idx_arrays(name: str, download: bool) -> tuple[dict[str, np.ndarray] | None, str]:
    """Fashion-MNIST / MNIST from tensorflow-datasets as IDX-like uint8 arrays.

    Returns:
        (arrays keyed like ``IDX_FILES``: images (N, 28, 28), labels (N,); or None, and a
        description of where they came from or why they could not be read).
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        return None, f"tensorflow-datasets is not importable ({error})"
    with quiet_tfds():
        builder = tfds.builder(name, data_dir=os.environ.get("TFDS_DATA_DIR"))
        prepared = builder.is_prepared()
    where = f"tensorflow-datasets in {builder.data_dir}"
    if not prepared:
        if not download:
            return None, f"{where}: not prepared (and downloading was not asked for)"
        try:
            builder.download_and_prepare()
        except Exception as error:  # tfds raises many kinds; all mean "not available"
            return None, f"{where}: download failed ({type(error).__name__}: {error})"
    arrays = {}
    for part in ("train", "test"):
        data = tfds.as_numpy(builder.as_dataset(split=part, batch_size=-1))
        arrays[f"{part}_images"] = data["image"][..., 0].astype(np.uint8)
        arrays[f"{part}_labels"] = data["label"].astype(np.uint8)
    return arrays, where


def _builder(tfds, name: str, root: str):
    """``tfds.builder`` with its long errors turned into one line each."""
    try:
        with quiet_tfds():
            return tfds.builder(name, data_dir=os.environ.get("TFDS_DATA_DIR"))
    except tfds.core.registered.DatasetNotFoundError as error:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split(":")[0].split("/")[0], known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DataError(
            f"tensorflow-datasets has no data set {name!r}{hint}; check the name against "
            f"tfds.list_builders(), or read the images from a folder (images=) or .npz (npz=)."
        ) from error
    except Exception as error:  # bad version or config: tfds raises assorted types
        raise DataError(
            f"tensorflow-datasets cannot open {name!r} in {root} ({_first_line(error)}); "
            f"check the name, version and config."
        ) from error


def _check_image_feature(name: str, features) -> tuple[tuple, bool]:
    """The image feature's (h, w, c) (None where it varies) and whether there are labels."""
    if "image" not in features:
        raise DataError(
            f"tensorflow-datasets {name!r} has no 'image' feature (it has: "
            f"{', '.join(features.keys())}); only image data sets can be loaded. Pick an "
            f"image data set, or write its images to a folder (images=) or .npz (npz=).")
    image = features["image"]
    shape = tuple(image.shape)
    if len(shape) != 3:
        raise DataError(
            f"tensorflow-datasets {name!r} has 'image' of shape {shape}; expected "
            f"(height, width, channels) images. Write them to a folder or .npz in that shape.")
    dtype = np.dtype(image.np_dtype)
    if dtype != np.uint8:
        raise DataError(
            f"tensorflow-datasets {name!r} stores images as {dtype}; expected uint8 (0-255). "
            f"Convert them to uint8 and read them from a folder (images=) or .npz (npz=).")
    tfds = _import_tfds()
    has_labels = "label" in features and isinstance(features["label"], tfds.features.ClassLabel)
    return shape, has_labels


def open_tfds(name: str, download: bool, image_size: tuple[int, int] | None,
              color: str | None) -> Source:
    """The tensorflow-datasets data set ``name``.

    Args:
        name: a tfds name, optionally with config and version (``"cifar10"``,
            ``"cifar10:3.0.2"``).
        download: download and prepare it when it is not prepared (needs network).
        image_size: (height, width) to resize to; needed when its images vary in size.
        color: ``"grayscale"`` or ``"rgb"`` to convert; None keeps the stored channels.

    Returns:
        A :class:`Source` with a ``train`` part, and ``test`` / ``validation`` parts when
        the data set has those splits.

    Raises:
        DataError: one line, for an unknown name, a data set that is not prepared (or
        failed to download), or one that has no uint8 images.
    """
    tfds = _import_tfds()
    root = tfds_root()
    builder = _builder(tfds, name, root)
    shape, has_labels = _check_image_feature(name, builder.info.features)
    with quiet_tfds():
        prepared = builder.is_prepared()
    if not prepared:
        if not download:
            raise DataError(
                f"tensorflow-datasets has no prepared {name!r} in {root} (TFDS_DATA_DIR); "
                f"point TFDS_DATA_DIR at a prepared copy or pass --download (needs network).")
        try:
            builder.download_and_prepare()
        except Exception as error:  # tfds raises many kinds; all mean "not available"
            raise DataError(
                f"tensorflow-datasets could not download {name!r} into {root} "
                f"({_first_line(error)}); check the network, or point TFDS_DATA_DIR at a "
                f"prepared copy.") from error
    splits = builder.info.splits
    if "train" not in splits:
        raise DataError(
            f"tensorflow-datasets {name!r} has no 'train' split (it has: "
            f"{', '.join(splits.keys())}); only data sets with a train split can be loaded.")
    height, width, stored_channels = shape
    if stored_channels not in (1, 2, 3, 4):
        raise DataError(
            f"tensorflow-datasets {name!r} has images with {stored_channels} channels; "
            f"expected 1 (grayscale) or 3 (RGB), optionally with alpha.")
    if color is None and stored_channels not in (1, 3):
        raise DataError(
            f"tensorflow-datasets {name!r} has images with {stored_channels} channels "
            f"(with alpha); expected 1 or 3. Pass color='grayscale' or 'rgb' (--color).")
    channels = {"grayscale": 1, "rgb": 3}.get(color, stored_channels)
    if image_size is None:
        if height is None or width is None:
            raise DataError(
                f"tensorflow-datasets {name!r} has images of varying size; pass "
                f"image_size=(height, width) (--image-size) to resize them to one size.")
        if min(height, width) < MIN_SIZE:
            raise DataError(
                f"tensorflow-datasets {name!r} has {height}×{width} images, smaller than "
                f"{MIN_SIZE}×{MIN_SIZE}; pass image_size (--image-size) to enlarge them.")
    where = f"tensorflow-datasets in {root}"
    labels = builder.info.features["label"].names if has_labels else None
    parts = {
        part: TFDSReader(builder, part, splits[part].num_examples, shape, image_size, channels,
                         has_labels, where)
        for part in PARTS if part in splits
    }
    return Source(name=name, where=where, parts=parts,
                  class_names=None if labels is None else tuple(labels), keep_order=True)


class TFDSReader:
    """One split of a prepared tensorflow-datasets data set, read in its stored order."""

    random_access = False

    def __init__(self, builder, split: str, count: int, stored_shape: tuple,
                 image_size: tuple[int, int] | None, channels: int, has_labels: bool,
                 where: str):
        self._builder = builder
        self.split = split
        self.count = int(count)
        self._stored_shape = stored_shape
        self.image_size = image_size
        self.channels = channels
        self.image_shape = (*(image_size or stored_shape[:2]), channels)
        self.has_labels = has_labels
        self.where = f"{where} ({builder.name} {split})"
        self._labels = None

    def _conform(self, image):
        return conform(image, self.image_size, self.channels)

    def sequence(self, indices: np.ndarray):
        """The images at ``indices`` (ascending), as a ``tf.data`` dataset of float32 images.

        A contiguous range is read as a tfds slice (only those records); other index sets
        read the whole split and keep the chosen images.
        """
        import tensorflow as tf

        indices = np.asarray(indices, np.int64)
        if len(indices) and indices[-1] - indices[0] + 1 == len(indices):
            examples = self._builder.as_dataset(
                split=f"{self.split}[{indices[0]}:{indices[-1] + 1}]", shuffle_files=False)
        else:
            mask = np.zeros(self.count, bool)
            mask[indices] = True
            chosen = tf.constant(mask)
            examples = (self._builder.as_dataset(split=self.split, shuffle_files=False)
                        .enumerate()
                        .filter(lambda index, example: tf.gather(chosen, index))
                        .map(lambda index, example: example))
        return examples.map(lambda example: self._conform(example["image"]),
                            num_parallel_calls=tf.data.AUTOTUNE)

    def _read_all(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Every image (uint8 as stored when all have one size, else conformed float32)
        and every label of the split, in one pass."""
        import tensorflow as tf

        fixed = None not in self._stored_shape
        if fixed:
            images = np.empty((self.count, *self._stored_shape), np.uint8)
        else:  # images of varying size are resized one by one before they can be stacked
            images = np.empty((self.count, *self.image_shape), np.float32)
        labels = np.empty(self.count, np.int64) if self.has_labels else None

        def pick(example):
            image = example["image"] if fixed else self._conform(example["image"])
            return image, (example["label"] if self.has_labels else tf.constant(0, tf.int64))

        examples = self._builder.as_dataset(split=self.split, shuffle_files=False)
        filled = 0
        batches = examples.map(pick, num_parallel_calls=tf.data.AUTOTUNE).batch(LOAD_BATCH)
        for image_batch, label_batch in batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
            end = filled + len(image_batch)
            if end > self.count:
                filled = end
                break
            images[filled:end] = image_batch
            if labels is not None:
                labels[filled:end] = label_batch
            filled = end
        if filled != self.count:
            raise DataError(
                f"{self.where}: its metadata announces {self.count} examples but "
                f"{'more' if filled > self.count else filled} were read; the prepared copy "
                f"is incomplete or corrupt. Prepare it again (--download).")
        return images, labels

    def load(self, selections: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        images, labels = self._read_all()
        self._labels = labels
        return [(to_float(images[indices], self.image_size, self.channels),
                 None if labels is None else labels[indices]) for indices in selections]

    def read_labels(self) -> np.ndarray | None:
        """Every label of the split, read once without decoding the images."""
        if not self.has_labels:
            return None
        if self._labels is None:
            import tensorflow as tf

            tfds = _import_tfds()
            examples = self._builder.as_dataset(
                split=self.split, shuffle_files=False,
                decoders={"image": tfds.decode.SkipDecoding()})
            batches = examples.map(lambda example: example["label"]).batch(LOAD_BATCH * 32)
            parts = list(batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())
            labels = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
            if len(labels) != self.count:
                raise DataError(
                    f"{self.where}: its metadata announces {self.count} examples but "
                    f"{len(labels)} labels were read; prepare it again (--download).")
            self._labels = labels
        return self._labels
