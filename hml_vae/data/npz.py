"""A NumPy .npz archive of images, with optional labels and class names.

The archive holds

- ``images``: (N, H, W) or (N, H, W, C) with C = 1 or 3; uint8 (0-255) or float in [0, 1];
- ``labels`` (optional): (N,) non-negative integers;
- ``class_names`` (optional, with ``labels``): strings, one per label value.

Write one with ``np.savez_compressed(path, images=images, labels=labels)``. A .npz is
read whole; streamed, its images stay as stored (uint8: a quarter of their float32 size)
and are converted batch by batch.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from hml_vae.data.dataset import DataError
from hml_vae.data.readers import MIN_SIZE, ArrayReader, Source

SAVE_HINT = "save it with np.savez(path, images=images, labels=labels)"


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        state = "is a directory" if path.exists() else "does not exist"
        raise DataError(f"{path} {state}; npz= must be a .npz file ({SAVE_HINT}).")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        # Bytes that are neither zip nor .npy make np.load try pickle: a ValueError.
        raise DataError(
            f"{path} cannot be read as a .npz archive ({type(error).__name__}: {error}); "
            f"{SAVE_HINT}.") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is a single .npy array, not a .npz archive; {SAVE_HINT}.")
    with loaded:
        try:
            return {key: loaded[key] for key in loaded.files}
        except ValueError as error:  # object arrays need pickle, which we never load
            raise DataError(
                f"{path}: an array needs pickle to load ({error}); store images and labels "
                f"as numbers and class_names as strings (np.array(names, dtype=str)).") from error
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise DataError(
                f"{path}: an array in it cannot be read ({type(error).__name__}: {error}); "
                f"the file is truncated or corrupt, {SAVE_HINT}.") from error


def _check_images(path: Path, images: np.ndarray, image_size) -> np.ndarray:
    """(N, H, W, C) images, after checking rank, channels, dtype, range and size."""
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: images of shape {images.shape}; expected (N, H, W) or (N, H, W, C) "
            f"with C = 1 or 3. Reshape them before saving.")
    if len(images) == 0:
        raise DataError(f"{path}: images holds no images; {SAVE_HINT} with at least 3 images.")
    if images.dtype == np.uint8:
        pass
    elif np.issubdtype(images.dtype, np.floating):
        if np.isnan(images).any():
            raise DataError(
                f"{path}: images holds NaN values; expected floats in [0, 1]. Replace them "
                f"before saving.")
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{path}: float images range over [{low:g}, {high:g}]; expected [0, 1]. Divide "
                f"0-255 values by 255, or save them as uint8.")
    else:
        raise DataError(
            f"{path}: images of dtype {images.dtype}; expected uint8 (0-255) or float in "
            f"[0, 1]. Convert them with images.astype(np.uint8) or / 255.")
    if image_size is None and min(images.shape[1:3]) < MIN_SIZE:
        raise DataError(
            f"{path}: {images.shape[1]}×{images.shape[2]} images, smaller than the "
            f"{MIN_SIZE}×{MIN_SIZE} minimum; pass image_size (--image-size) to enlarge them.")
    return images


def _check_labels(path: Path, arrays: dict, count: int):
    """(int64 labels or None, class names or None)."""
    labels, names = arrays.get("labels"), arrays.get("class_names")
    if labels is None:
        if names is not None:
            raise DataError(
                f"{path}: class_names without labels; save labels=... (one int per image) "
                f"too, or leave out class_names.")
        return None, None
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(
            f"{path}: labels of shape {labels.shape} for {count} images; expected ({count},), "
            f"one integer per image.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: labels of dtype {labels.dtype}; expected integers (class indices). "
            f"Convert them with labels.astype(np.int64).")
    if labels.min() < 0:
        raise DataError(
            f"{path}: negative label {labels.min()}; expected class indices 0, 1, ... .")
    labels = labels.astype(np.int64)
    if names is None:
        return labels, tuple(str(value) for value in range(int(labels.max()) + 1))
    names = np.asarray(names).ravel()
    if not np.issubdtype(names.dtype, np.str_) or len(names) <= labels.max():
        raise DataError(
            f"{path}: class_names {names.tolist()[:5]} ... of dtype {names.dtype} for labels "
            f"up to {labels.max()}; expected at least {labels.max() + 1} strings. Save them "
            f"with np.array(names, dtype=str).")
    return labels, tuple(str(name) for name in names)


def open_npz(path: str | os.PathLike, image_size: tuple[int, int] | None,
             color: str | None) -> Source:
    """The images (and labels) of a .npz archive; see the module doc for its layout.

    Args:
        path: the .npz file.
        image_size: (height, width) to resize to, or None to keep the stored size.
        color: ``"grayscale"`` or ``"rgb"`` to convert; None keeps the stored channels.

    Returns:
        A :class:`Source` with one ``train`` part.

    Raises:
        DataError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    arrays = _read_archive(path)
    if "images" not in arrays:
        raise DataError(
            f"{path} has no 'images' array (it holds: {', '.join(arrays) or 'nothing'}); "
            f"{SAVE_HINT}.")
    images = _check_images(path, arrays["images"], image_size)
    labels, class_names = _check_labels(path, arrays, len(images))
    channels = {"grayscale": 1, "rgb": 3}.get(color, images.shape[-1])
    reader = ArrayReader(images, labels, image_size, channels, where=str(path))
    return Source(name=path.stem, where=str(path), parts={"train": reader},
                  class_names=class_names)
