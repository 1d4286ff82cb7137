"""A folder of image files: checked with PIL, listed by Keras, decoded by TensorFlow.

Two layouts are read:

- class subfolders (``DIR/cat/001.png``, ``DIR/dog/002.jpg``, nested folders allowed
  inside a class): the labels are the subfolders, in alphabetical order, and the class
  names are their names;
- a flat folder of images (``DIR/001.png``, ...): no labels.

Keras' ``image_dataset_from_directory`` lists the files (its order, labels and class
names are the data set's); each image is then decoded as Keras decodes it
(``decode_image`` and a bilinear resize), one file at a time, so that a split can read
just its own files, in memory or streamed.

Before anything is decoded, every file is opened with PIL, so that a folder TensorFlow
would choke on halfway through an epoch is refused up front with one line saying what is
wrong and what to do: a path that is not a directory, no images, a file that is not an
image or cannot be read, images next to class subfolders, an empty class subfolder,
images of mixed sizes (without ``image_size``), images smaller than 8×8, or a mix of
grayscale and colour images (without ``color``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hml_vae.data.dataset import DataError
from hml_vae.data.readers import MIN_SIZE, FileReader, Source

# The extensions Keras' image_dataset_from_directory reads (lower case).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
# PIL modes without colour; everything else (RGB, RGBA, P, CMYK, YCbCr, ...) is colour.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _survey(directory: Path) -> tuple[dict[str, int], list[Path], list[Path]]:
    """Image files per class subfolder, image files at the top level, non-image files."""
    per_subfolder = {entry.name: 0 for entry in sorted(directory.iterdir())
                     if entry.is_dir() and not _is_hidden(entry.name)}
    top_images, strays = [], []
    for root, folders, files in os.walk(directory):
        folders[:] = [name for name in folders if not _is_hidden(name)]
        relative = Path(root).relative_to(directory).parts
        for name in sorted(files):
            if _is_hidden(name):
                continue
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                strays.append(Path(root) / name)
            elif relative:
                per_subfolder[relative[0]] += 1
            else:
                top_images.append(Path(root) / name)
    return per_subfolder, top_images, sorted(strays)


def _list_files(directory: Path, labeled: bool) -> tuple[list[str], list[str] | None]:
    """The image files as Keras lists them, and the class names (None without labels)."""
    import keras

    # Only the listing is used (file_paths and class_names); the images are decoded by
    # hml_vae.data.readers.FileReader. The size and colour here are placeholders.
    listing = keras.utils.image_dataset_from_directory(
        str(directory), labels="inferred" if labeled else None, label_mode="int",
        color_mode="rgb", batch_size=None, image_size=(MIN_SIZE, MIN_SIZE), shuffle=False,
        verbose=False)
    # Keras walks into hidden folders of a flat folder; they are not part of the data.
    paths = [path for path in listing.file_paths
             if not any(_is_hidden(part) for part in Path(path).relative_to(directory).parts)]
    return paths, (list(listing.class_names) if labeled else None)


def _inspect(path: str) -> tuple[tuple[int, int] | None, str | None, str | None]:
    """((height, width), PIL mode, None), or (None, None, why it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            mode = image.mode
            image.verify()  # reads the whole file: truncated or corrupt data fails here
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ...
        return None, None, f"{type(error).__name__}: {error}"
    return (height, width), mode, None


def _pixels(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def open_folder(directory: str | os.PathLike, image_size: tuple[int, int] | None,
                color: str | None) -> Source:
    """A folder of images, with labels from its class subfolders if it has any.

    Args:
        directory: the folder (see the module doc for the two layouts).
        image_size: (height, width) to resize every image to; None keeps their size,
            which must then be the same for all.
        color: ``"grayscale"`` or ``"rgb"`` to convert every image; None keeps their own
            channel count, which must then be the same for all.

    Returns:
        A :class:`Source` with one ``train`` part (a folder has no test split of its own).

    Raises:
        DataError: one line naming the problem (see the module doc).
    """
    directory = Path(directory)
    if not directory.is_dir():
        state = "is a file" if directory.exists() else "does not exist"
        raise DataError(
            f"{directory} {state}; images= must be a folder of image files "
            f"({', '.join(IMAGE_EXTENSIONS)}), directly or in one subfolder per class.")
    per_subfolder, top_images, strays = _survey(directory)
    if strays:
        others = f" (and {len(strays) - 1} more)" if len(strays) > 1 else ""
        raise DataError(
            f"{strays[0]} is not an image{others}; expected only {', '.join(IMAGE_EXTENSIONS)} "
            f"files in {directory}. Move other files out of the folder.")
    if not top_images and not any(per_subfolder.values()):
        raise DataError(
            f"{directory} holds no images ({', '.join(IMAGE_EXTENSIONS)}), neither directly nor "
            f"in subfolders; point images= at a folder of image files.")
    labeled = bool(per_subfolder)
    if labeled and top_images:
        raise DataError(
            f"{directory} has images at its top level ({top_images[0].name}) next to class "
            f"subfolders ({', '.join(list(per_subfolder)[:3])}); put every image in a class "
            f"subfolder, or use a flat folder without subfolders.")
    empty = [name for name, count in per_subfolder.items() if count == 0]
    if empty:
        raise DataError(
            f"{directory / empty[0]} is an empty class subfolder (no "
            f"{', '.join(IMAGE_EXTENSIONS)} files); add its images or remove it.")
    paths, class_names = _list_files(directory, labeled)
    labels = None
    if labeled:
        label_of = {name: label for label, name in enumerate(class_names)}
        labels = np.array([label_of[Path(path).relative_to(directory).parts[0]]
                           for path in paths], np.int64)
    size, channels = _check_images(directory, paths, image_size, color)
    reader = FileReader(paths, labels, size, channels, where=str(directory))
    return Source(name=directory.resolve().name, where=str(directory),
                  parts={"train": reader},
                  class_names=None if class_names is None else tuple(class_names))


def _check_images(directory: Path, paths: list[str], image_size: tuple[int, int] | None,
                  color: str | None) -> tuple[tuple[int, int], int]:
    """Opens every image with PIL; returns the (height, width) and channels to read."""
    # Opening files is mostly waiting for the disk: threads overlap it.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        found = list(pool.map(_inspect, paths, chunksize=64))
    unreadable = [(path, why) for path, (_, _, why) in zip(paths, found, strict=True)
                  if why is not None]
    if unreadable:
        path, why = unreadable[0]
        others = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        raise DataError(
            f"{path} cannot be read as an image{others} ({why}); replace or remove it.")
    sizes = {size for size, _, _ in found}
    if image_size is None:
        if len(sizes) > 1:
            first = found[0][0]
            other = next(index for index, (size, _, _) in enumerate(found) if size != first)
            raise DataError(
                f"{directory} has images of different sizes ({Path(paths[0]).name} is "
                f"{_pixels(first)}, {Path(paths[other]).name} is {_pixels(found[other][0])}); "
                f"pass image_size=(height, width) (--image-size) to resize them all.")
        size = sizes.pop()
        if min(size) < MIN_SIZE:
            raise DataError(
                f"{directory} has {_pixels(size)} images ({Path(paths[0]).name}), smaller than "
                f"the {MIN_SIZE}×{MIN_SIZE} minimum; pass image_size (--image-size) to "
                f"enlarge them.")
    else:
        size = tuple(image_size)
    if color is not None:
        return size, 1 if color == "grayscale" else 3
    gray = [mode in GRAY_MODES for _, mode, _ in found]
    if all(gray):
        return size, 1
    if not any(gray):
        return size, 3
    gray_file, colour_file = Path(paths[gray.index(True)]).name, Path(paths[gray.index(False)]).name
    raise DataError(
        f"{directory} mixes grayscale ({gray_file}) and colour ({colour_file}) images; pass "
        f"color='grayscale' or 'rgb' (--color) to convert them all to one.")
