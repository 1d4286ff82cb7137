"""Fashion-MNIST / MNIST: IDX files, where to find them, and HOML's split of them.

An IDX name (``fashion_mnist``, ``mnist``) is looked for, in this order, in

1. an explicit directory (``--data-dir`` or the ``HML_VAE_DATA_DIR`` variable);
2. the Debian/Ubuntu package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
3. tensorflow-datasets: a copy already prepared in ``TFDS_DATA_DIR`` (or tfds' default
   directory), or a download when ``download=True`` (needs network access).

Nothing ever falls back to synthetic or partial data: a data set that cannot be found or
read is a :class:`DataError` that says where we looked and how to get the files.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from hml_vae.data.dataset import DataError
from hml_vae.data.readers import ArrayReader, Source
from hml_vae.data.tfds_source import tfds_idx_arrays

IDX_DATASETS = ("fashion_mnist", "mnist")
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
    """Whether ``directory`` holds all four IDX files (gzip or raw)."""
    return all(find_idx_file(directory, stem) for stem in IDX_FILES.values())


def read_idx_directory(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the four IDX files of a directory and checks they agree with each other.

    Args:
        directory: holds the four ``IDX_FILES``, each gzip-compressed or raw.

    Returns:
        uint8 arrays keyed like ``IDX_FILES``: images (N, 28, 28), labels (N,).

    Raises:
        DataError: naming the file that is missing, corrupt or inconsistent.
    """
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


def missing_data_message(name: str, searched: list[str]) -> str:
    """Every place searched for ``name`` and every way to get it, on one line."""
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
    return (f"Data set {name!r} not found. Searched, in order: {'; '.join(searched)}. "
            f"To get it: " + "; ".join(f"({number}) {way}"
                                       for number, way in enumerate(ways, start=1)) + ".")


def load_raw(
    name: str, data_dir: str | None = None, download: bool = False
) -> tuple[dict[str, np.ndarray], str]:
    """Finds the data set's four arrays (uint8) in the first source that has them.

    Returns:
        (arrays keyed like ``IDX_FILES``, a description of the source).
    """
    if name not in IDX_DATASETS:
        raise DataError(
            f"unknown IDX data set {name!r}; expected one of {', '.join(IDX_DATASETS)}.")
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
    arrays, where = tfds_idx_arrays(name, download)
    if arrays is not None:
        return arrays, where
    searched.append(where)
    raise DataError(missing_data_message(name, searched))


def open_idx(name: str, data_dir: str | None, download: bool,
             image_size: tuple[int, int] | None, color: str | None) -> Source:
    """The IDX data set ``name`` from the first place that has it (see the module doc).

    Args:
        name: ``fashion_mnist`` or ``mnist``.
        data_dir: a directory with the four IDX files; overrides every other place.
        download: allow tensorflow-datasets to download (needs network).
        image_size: (height, width) to resize the 28×28 images to, or None.
        color: ``"rgb"`` repeats the gray channel three times; None or ``"grayscale"``
            keep one channel.

    Returns:
        A :class:`Source` with ``train`` (60,000) and ``test`` (10,000) parts.
    """
    arrays, where = load_raw(name, data_dir, download)
    channels = 3 if color == "rgb" else 1
    parts = {
        part: ArrayReader(arrays[f"{part}_images"][..., np.newaxis],
                          arrays[f"{part}_labels"].astype(np.int64), image_size, channels, where)
        for part in ("train", "test")
    }
    return Source(name=name, where=where, parts=parts, class_names=CLASS_NAMES[name])


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


def homl_plan(source: Source, limit: int | None) -> dict[str, tuple[str, np.ndarray]]:
    """HOML's split: the first 55,000 training images, the last 5,000, the 10,000 test.

    Args:
        source: from :func:`open_idx`.
        limit: keep the first ``limit`` training images and proportionally fewer
            validation and test images, or None for all.

    Returns:
        ``{"train" | "valid" | "test": (part name, int64 indices into that part)}``.
    """
    train_size, valid_size, test_size = _subset_sizes(limit)
    train_count, test_count = source.parts["train"].count, source.parts["test"].count
    split_at = train_count - VALIDATION_SIZE
    return {
        "train": ("train", np.arange(min(train_size, split_at))),
        "valid": ("train", np.arange(split_at, min(split_at + valid_size, train_count))),
        "test": ("test", np.arange(min(test_size, test_count))),
    }
