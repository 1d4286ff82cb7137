"""Fashion-MNIST / MNIST: IDX files, where to find them, HOML's split and tf.data pipelines.

Sources are tried in the order DESIGN.md gives:

1. an explicit directory (``--data-dir`` or the ``HML_VAE_DATA_DIR`` variable);
2. the Debian/Ubuntu package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
3. tensorflow-datasets: a copy already prepared in ``TFDS_DATA_DIR`` (or tfds' default
   directory), or a download when ``download=True`` (needs network access).

Nothing ever falls back to synthetic or partial data: a data set that cannot be found or
read is a :class:`DataError` that says where we looked and how to get the files.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

DATASETS = ("fashion_mnist", "mnist")
BINARIZATIONS = ("none", "static", "dynamic")
STREAMING = ("auto", "memory", "stream")
COLORS = ("grayscale", "rgb")
DEBIAN_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
DATA_DIR_VARIABLE = "HML_VAE_DATA_DIR"

CLASS_NAMES = {
    "fashion_mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "mnist": tuple(str(digit) for digit in range(10)),
}

# HOML's split of the 60,000 training images: the last 5,000 are the validation set.
VALIDATION_SIZE = 5_000
TRAIN_SIZE = 55_000
TEST_SIZE = 10_000

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


class DataError(ValueError):
    """A data set that is missing, corrupt or asked for in a way we cannot serve."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One part of a data set: float32 images in [0, 1] of shape (N, 28, 28), int labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    in_memory = True

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    def head(self, count):
        return self.images[:count], self.labels[:count]

    def batches(self, batch_size):
        for start in range(0, len(self.images), batch_size):
            yield self.images[start:start + batch_size]

    def pipeline(self, batch_size, shuffle=False, seed=42, binarize="none", full_batches=False):
        return make_pipeline(self.images, batch_size, shuffle=shuffle, seed=seed,
                             binarize=binarize, full_batches=full_batches)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """HOML's split of a data set and where it came from."""

    name: str
    source: str
    train: Split
    valid: Split
    test: Split

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[self.name]

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        return self.train.image_shape

    def describe(self):
        return f"{self.name} ({'×'.join(map(str, self.image_shape))}) from {self.source}"

    def binarized(self, mode, seed):
        def part(split, redrawn):
            if mode == "static" or (mode == "dynamic" and not redrawn):
                return Split(binarize_static(split.images, seed), split.labels)
            return split
        return dataclasses.replace(self, train=part(self.train, True), valid=part(self.valid, False),
                                   test=part(self.test, False))


SOURCE_FIELDS = ("dataset", "data_dir", "download")


def load_for_config(config):
    return load_dataset(config.dataset, config.data_dir, config.limit, config.binarize,
                        config.seed, config.download)


# --- IDX files -------------------------------------------------------------------------


def read_idx(path: str | os.PathLike, expected_magic: int) -> np.ndarray:
    """Reads one IDX file (gzip-compressed or raw) into a uint8 array.

    Args:
        path: the file; a ``.gz`` suffix means gzip.
        expected_magic: ``IMAGES_MAGIC`` or ``LABELS_MAGIC``.

    Returns:
        (N, rows, cols) for images, (N,) for labels.

    Raises:
        DataError: naming the file, when it is truncated, not gzip, has the wrong magic
        number or a size that disagrees with its header.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(
            f"{path}: cannot read it as {'gzip' if path.suffix == '.gz' else 'a raw IDX file'} "
            f"({error}). The file is corrupt or truncated; delete it and get a fresh copy."
        ) from error
    if len(raw) < 8:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header.")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise DataError(
            f"{path}: magic number {magic:#010x}, expected {expected_magic:#010x} for an IDX "
            f"{kind} file. Is this the right file, or a corrupt one?"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated inside its header; get a fresh copy of the file.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_size + math.prod(shape)
    if len(raw) != expected_size:
        raise DataError(
            f"{path}: the header announces shape {shape} ({expected_size} bytes in all) but the "
            f"file holds {len(raw)} bytes. The file is truncated or corrupt; get a fresh copy."
        )
    if ndim == 3 and shape[1:] != (28, 28):
        raise DataError(f"{path}: images of {shape[1]}x{shape[2]} pixels, expected 28x28.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def find_idx_file(directory: Path, stem: str) -> Path | None:
    """The gzip or raw file for ``stem`` in ``directory`` (gzip preferred), or None."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def has_idx_files(directory: Path) -> bool:
    return all(find_idx_file(directory, stem) for stem in IDX_FILES.values())


def read_idx_directory(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the four IDX files of a directory and checks they agree with each other."""
    directory = Path(directory)
    missing = [stem for stem in IDX_FILES.values() if not find_idx_file(directory, stem)]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(missing)} (with or without .gz). A data directory "
            f"needs the four IDX files {', '.join(IDX_FILES.values())}."
        )
    arrays = {}
    for key, stem in IDX_FILES.items():
        magic = IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC
        arrays[key] = read_idx(find_idx_file(directory, stem), magic)
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"{find_idx_file(directory, IDX_FILES[f'{part}_images'])} holds {len(images)} "
                f"images but {find_idx_file(directory, IDX_FILES[f'{part}_labels'])} holds "
                f"{len(labels)} labels; they must match. One of the files is from another copy."
            )
    if len(arrays["train_images"]) <= VALIDATION_SIZE:
        raise DataError(
            f"{directory}: {len(arrays['train_images'])} training images, need more than "
            f"{VALIDATION_SIZE} for HOML's validation split."
        )
    if arrays["train_labels"].max(initial=0) > 9 or arrays["test_labels"].max(initial=0) > 9:
        raise DataError(f"{directory}: labels outside 0..9; these are not (Fashion-)MNIST files.")
    return arrays


# --- Sources ---------------------------------------------------------------------------


def _tfds_arrays(name: str, download: bool) -> tuple[dict[str, np.ndarray] | None, str]:
    """The data set from tensorflow-datasets, or (None, why not)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        return None, f"tensorflow-datasets is not importable ({error})"
    data_dir = os.environ.get("TFDS_DATA_DIR")
    builder = tfds.builder(name, data_dir=data_dir)
    where = f"tensorflow-datasets in {builder.data_dir}"
    if not builder.is_prepared():
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


def missing_data_message(name: str, searched: list[str]) -> str:
    package = DEBIAN_PACKAGES.get(name)
    ways = [
        f"pass --data-dir DIR (or set {DATA_DIR_VARIABLE}=DIR) for a directory holding the four "
        f"IDX files {', '.join(IDX_FILES.values())} (gzip or raw)",
    ]
    if package:
        ways.append(f"on Debian/Ubuntu: sudo apt-get install {package}")
    ways.append(
        "with network access: pass --download to fetch it with tensorflow-datasets, or point "
        "TFDS_DATA_DIR at a prepared tensorflow-datasets directory"
    )
    lines = [f"Data set {name!r} not found. Searched, in order:"]
    lines += [f"  - {place}" for place in searched]
    lines.append("To get it:")
    lines += [f"  {number}. {way}" for number, way in enumerate(ways, start=1)]
    return "\n".join(lines)


def load_raw(
    name: str, data_dir: str | None = None, download: bool = False
) -> tuple[dict[str, np.ndarray], str]:
    """Finds the data set's four arrays (uint8) in the first source that has them.

    Returns:
        (arrays keyed like ``IDX_FILES``, a description of the source).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}.")
    explicit = data_dir or os.environ.get(DATA_DIR_VARIABLE)
    if explicit:
        # An explicit directory is what the user wants: if it is wrong, say so, don't look
        # elsewhere (that would silently train on other data than they asked for).
        directory = Path(explicit)
        origin = "--data-dir" if data_dir else DATA_DIR_VARIABLE
        if not directory.is_dir():
            raise DataError(
                f"{directory} ({origin}) is not a directory. Point it at a directory holding "
                f"the four IDX files {', '.join(IDX_FILES.values())}, or leave it unset to use "
                f"the installed data set."
            )
        return read_idx_directory(directory), str(directory)
    searched = [f"--data-dir and {DATA_DIR_VARIABLE}: not given"]
    debian = DEBIAN_DIRS.get(name)
    if debian is not None:
        if has_idx_files(debian):
            return read_idx_directory(debian), str(debian)
        searched.append(f"{debian} (Debian package {DEBIAN_PACKAGES[name]}): not installed")
    arrays, where = _tfds_arrays(name, download)
    if arrays is not None:
        return arrays, where
    searched.append(where)
    raise DataError(missing_data_message(name, searched))


def _subset_sizes(limit: int | None) -> tuple[int, int, int]:
    """Train/validation/test sizes: HOML's, or ``limit`` training images and the same
    proportion of validation and test images (at least one of each)."""
    if limit is None or limit >= TRAIN_SIZE:
        return TRAIN_SIZE, VALIDATION_SIZE, TEST_SIZE
    fraction = limit / TRAIN_SIZE
    return (
        limit,
        max(1, math.ceil(VALIDATION_SIZE * fraction)),
        max(1, math.ceil(TEST_SIZE * fraction)),
    )


def binarize_static(images: np.ndarray, seed: int) -> np.ndarray:
    """One fixed Bernoulli draw per pixel (p = intensity), the same for every epoch."""
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


def load_dataset(
    name: str = "fashion_mnist",
    data_dir: str | None = None,
    limit: int | None = None,
    binarize: str = "none",
    seed: int = 42,
    download: bool = False,
) -> Dataset:
    """HOML's split (55,000 / 5,000 / 10,000) with pixels / 255 as float32 in [0, 1].

    Args:
        name: ``fashion_mnist`` or ``mnist``.
        data_dir: a directory with the four IDX files; overrides every other source.
        limit: keep the first ``limit`` training images and proportionally fewer
            validation and test images (smoke runs and tests).
        binarize: ``none``; ``static`` draws each pixel once from Bernoulli(intensity) with
            ``seed`` (the same binary images every epoch); ``dynamic`` leaves the training
            images gray here for :func:`make_pipeline` to redraw every epoch, and draws the
            validation and test images once, like ``static``.
        seed: for static binarization.
        download: allow tensorflow-datasets to download (needs network).

    Example:
        >>> data = load_dataset("fashion_mnist", limit=2000)
        >>> data.train.images.shape
        (2000, 28, 28)
    """
    if binarize not in BINARIZATIONS:
        raise DataError(f"unknown binarization {binarize!r}; expected one of {BINARIZATIONS}.")
    if limit is not None and limit <= 0:
        raise DataError(f"limit must be a positive number of images, got {limit}.")
    arrays, source = load_raw(name, data_dir, download)
    train_size, valid_size, test_size = _subset_sizes(limit)
    full_train_images = arrays["train_images"]
    split_at = len(full_train_images) - VALIDATION_SIZE

    def make_split(images: np.ndarray, labels: np.ndarray, size: int, redrawn: bool) -> Split:
        images = images[:size, :, :, None].astype(np.float32) / 255.0
        if binarize == "static" or (binarize == "dynamic" and not redrawn):
            images = binarize_static(images, seed)
        return Split(images, labels[:size].astype(np.int64))

    # With dynamic binarization only the training images are redrawn (by the pipeline);
    # validation and test images are drawn once so that evaluations are comparable.
    return Dataset(
        name=name,
        source=source,
        train=make_split(full_train_images[:split_at], arrays["train_labels"][:split_at],
                         train_size, redrawn=True),
        valid=make_split(full_train_images[split_at:], arrays["train_labels"][split_at:],
                         valid_size, redrawn=False),
        test=make_split(arrays["test_images"], arrays["test_labels"], test_size, redrawn=False),
    )


# --- Pipelines -------------------------------------------------------------------------


def make_pipeline(
    images: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 42,
    binarize: str = "none",
    image_shape: tuple[int, ...] | None = None,
    full_batches: bool = False,
):
    """A ``tf.data`` pipeline of ``(x, x)`` batches for autoencoder training.

    The images are held in memory as one tensor and each batch is gathered from it by
    index: shuffling permutes the indices (a new permutation each epoch, fixed by ``seed``)
    rather than passing 55,000 single images through a shuffle buffer, which cost more
    CPU than the dense VAE's training step can spare on 2 cores
    (benchmarks/throughput.py). ``binarize="dynamic"`` draws fresh binary pixels every
    epoch.

    Args:
        images: float32 (N, 28, 28) in [0, 1].
        batch_size: images per batch (the last batch may be smaller).
        image_shape: per-image shape the model expects, e.g. (28, 28, 1) for conv models.
        full_batches: leave out the last, smaller batch (when there is a full one), so
            that every batch has ``batch_size`` images. For training: an XLA-compiled step
            sees one shape instead of two, which on CPU made every step ~2x slower and
            compiled it again in the second epoch (benchmarks/throughput.py). Shuffled,
            a different few images (< batch_size) are left out each epoch.
    """
    import tensorflow as tf

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    count = len(images)
    drop_remainder = full_batches and count >= batch_size
    tensor = tf.constant(images if image_shape is None else images.reshape((-1, *image_shape)))
    if shuffle:
        # One random integer per epoch, new every epoch but fixed by the seed, keys a
        # stateless permutation.
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)

        def epoch_batches(key):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count), seed=tf.stack([key, 1]))  # [key, 0] binarizes
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder)

        dataset = keys.flat_map(epoch_batches).map(lambda indices: tf.gather(tensor, indices))
    else:
        end = count - count % batch_size if drop_remainder else count
        dataset = tf.data.Dataset.range(0, end, batch_size).map(
            lambda start: tensor[start : start + batch_size])
    if binarize == "dynamic":
        # One random integer per batch, new every epoch but fixed by the seed, keys a
        # stateless draw: reproducible runs whose binary images change each epoch.
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        def draw(batch, key):
            noise = tf.random.stateless_uniform(tf.shape(batch), seed=tf.stack([key, 0]))
            return tf.cast(noise < batch, tf.float32)

        dataset = tf.data.Dataset.zip(dataset, keys).map(draw, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(lambda x: (x, x))
    batches = count // batch_size if drop_remainder else -(-count // batch_size)
    # Known to Keras (and to :func:`fit_arguments`): the permuted batches come through
    # a flat_map, whose length tf.data cannot infer.
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.prefetch(tf.data.AUTOTUNE)
