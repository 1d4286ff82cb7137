"""Client-side checks of what is sent to a served model (NumPy only, no TensorFlow).

:func:`check_request_images` checks float images and says which conversion is missing;
:func:`read_image_file` checks a PNG/JPEG file before its bytes are sent to an
``*_image_bytes`` signature. The served graph checks everything again.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hml_vae.export.checks import (
    JPEG_SIGNATURE,
    MAX_IMAGE_BYTES,
    PNG_SIGNATURE,
    format_batch_shape,
)


def _shape_hint(shape: tuple, image_shape: tuple) -> str:
    """What probably went wrong with images of ``shape``, as an instruction."""
    height, width, channels = image_shape
    if shape[1:] == (height, width) and channels == 1:
        return "add the channel axis: images[..., None]."
    if shape[1:] == (channels, height, width):
        return "put the channels last: images.transpose(0, 2, 3, 1)."
    if len(shape) == 2 and shape[1] == math.prod(image_shape):
        return f"if they are flattened rows, images.reshape(-1, {height}, {width}, {channels})."
    return (f"the served model takes {height}x{width} images with {channels} channel"
            f"{'s' if channels != 1 else ''}; convert or resize them.")


def check_request_images(images, image_shape) -> np.ndarray:
    """Images as the signatures of a model of ``image_shape`` take them, or ValueError
    saying what was expected and which conversion is missing.

    Args:
        images: float pixels in [0, 1] of shape (batch, H, W, C), or one image (H, W, C).
        image_shape: the served model's (H, W, C) (``models.image_shape``; the export
            metadata's ``image_shape``).

    Returns:
        float32 (batch, H, W, C).

    Example:
        >>> check_request_images(np.zeros((2, 28, 28)), (28, 28, 1))
        ValueError: expected images of shape (batch, 28, 28, 1), got shape (2, 28, 28); add
        the channel axis: images[..., None].
    """
    image_shape = tuple(int(size) for size in image_shape)
    expected = format_batch_shape(image_shape)
    array = np.asarray(images)
    if array.dtype == np.uint8:
        raise ValueError(f"expected float32 pixels in [0, 1] of shape {expected}, got uint8 "
                         f"of shape {array.shape}; send images.astype('float32') / 255.")
    if array.shape == image_shape:
        array = array[None]  # one image
    if array.shape[1:] != image_shape:
        raise ValueError(f"expected images of shape {expected}, got shape {array.shape}; "
                         f"{_shape_hint(array.shape, image_shape)}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected float32 pixels in [0, 1], got dtype {array.dtype}.")
    array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"expected finite pixel values in [0, 1], got "
                         f"{array.size - np.count_nonzero(finite)} NaN or infinite values.")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"expected pixel values in [0, 1], got values in "
                         f"[{array.min():g}, {array.max():g}]; divide 0-255 pixels by 255.")
    return array



def read_image_file(path: str | Path) -> bytes:
    """The bytes of a PNG or JPEG file, to send to an ``*_image_bytes`` signature.

    Raises:
        ValueError: the file is missing, empty, larger than the server accepts
            (:data:`~hml_vae.export.checks.MAX_IMAGE_BYTES`) or not a PNG or JPEG.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ValueError(f"{path} is not a file; pass PNG or JPEG files to --image.")
        if size > MAX_IMAGE_BYTES:
            raise ValueError(f"{path} holds {size} bytes; the served model accepts images "
                             f"of at most {MAX_IMAGE_BYTES} bytes: send a smaller file.")
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}; pass PNG or JPEG files "
                         f"to --image.") from None
    if not data:
        raise ValueError(f"{path} is empty; pass PNG or JPEG files to --image.")
    if not (data.startswith(PNG_SIGNATURE) or data.startswith(JPEG_SIGNATURE)):
        raise ValueError(f"{path} is not a PNG or JPEG file; convert it (e.g. to PNG) "
                         f"first.")
    return data


def to_pixels(images) -> np.ndarray:
    """Float images in [0, 1] as uint8 pixels 0-255 (rounded): what the ``*_uint8``
    signatures take."""
    return np.round(np.clip(np.asarray(images, np.float32), 0, 1) * 255).astype(np.uint8)
