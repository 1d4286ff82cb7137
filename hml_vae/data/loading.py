"""load_dataset: pick the source, split it, load or stream each split, binarize."""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from hml_vae.data.dataset import DataError, Dataset, Split
from hml_vae.data.folder import open_folder
from hml_vae.data.idx import IDX_DATASETS, homl_plan, open_idx
from hml_vae.data.npz import open_npz
from hml_vae.data.pipeline import binarize_static
from hml_vae.data.readers import MIN_SIZE, Source, Stream
from hml_vae.data.tfds_source import open_tfds

BINARIZATIONS = ("none", "static", "dynamic")
STREAMING = ("auto", "memory", "stream")
COLORS = ("grayscale", "rgb")
# The config fields that say where the images come from (hml_vae.config.Config has them).
SOURCE_FIELDS = ("dataset", "data_dir", "download", "images", "npz", "image_size", "color",
                 "streaming")
SPLIT_NAMES = ("train", "valid", "test")

# Fixed, not the run's seed: which images are test images is a property of the data.
SPLIT_SEED = 0
# HOML's proportions: 10,000 test images of 70,000, 5,000 validation images of 60,000.
TEST_FRACTION = 7
VALIDATION_FRACTION = 12

STREAM_BYTES_VARIABLE = "HML_VAE_STREAM_BYTES"


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: assume a modest 8 GiB
        return 8 * 2**30


# streaming="auto" streams a data set whose float32 images would take more than this.
STREAM_BYTES = _physical_memory() // 4


def stream_threshold() -> int:
    """Bytes of float32 images above which ``streaming="auto"`` streams: ``STREAM_BYTES``,
    or the ``HML_VAE_STREAM_BYTES`` environment variable when it is set."""
    value = os.environ.get(STREAM_BYTES_VARIABLE)
    if not value:
        return STREAM_BYTES
    try:
        return int(value)
    except ValueError:
        raise DataError(
            f"{STREAM_BYTES_VARIABLE}={value!r} is not a whole number of bytes; set it to "
            f"e.g. 1000000000, or unset it for a quarter of the memory "
            f"({STREAM_BYTES:,} bytes).") from None


def _check_image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    try:
        height, width = (int(size) for size in image_size)
    except (TypeError, ValueError):
        height = width = None
    if height is None or min(height, width) < MIN_SIZE or tuple(image_size) != (height, width):
        raise DataError(
            f"image_size must be two whole numbers (height, width), each at least {MIN_SIZE}; "
            f"got {image_size!r}. Pass e.g. image_size=(32, 32) (--image-size 32 32).")
    return height, width


def _check_arguments(limit, binarize, color, streaming, image_size) -> tuple[int, int] | None:
    if binarize not in BINARIZATIONS:
        raise DataError(f"unknown binarization {binarize!r}; expected one of {BINARIZATIONS}.")
    if streaming not in STREAMING:
        raise DataError(f"unknown streaming {streaming!r}; expected one of {STREAMING}.")
    if color is not None and color not in COLORS:
        raise DataError(
            f"unknown color {color!r}; expected one of {COLORS}, or None to keep the images' "
            f"own channels.")
    if limit is not None and limit <= 0:
        raise DataError(f"limit must be a positive number of images, got {limit}.")
    return _check_image_size(image_size)


def plan_splits(source: Source, limit: int | None) -> dict[str, tuple[str, np.ndarray]]:
    """Which images of which part make up train, valid and test (see the package doc).

    Returns:
        ``{"train" | "valid" | "test": (part name, int64 indices into that part)}``, each
        in the order the split lists its images.
    """
    parts = source.parts
    remaining = np.arange(parts["train"].count)
    needed = 1 + ("test" not in parts) + ("validation" not in parts)
    if len(remaining) < needed:
        raise DataError(
            f"{source.where}: {len(remaining)} training image(s), too few to split; need at "
            f"least {needed} (one for each of training, validation and test).")
    if "test" in parts:
        test = ("test", np.arange(parts["test"].count))
    else:
        remaining = np.random.default_rng(SPLIT_SEED).permutation(len(remaining))
        count = max(1, len(remaining) // TEST_FRACTION)
        test, remaining = ("train", remaining[-count:]), remaining[:-count]
    if "validation" in parts:
        valid = ("validation", np.arange(parts["validation"].count))
    else:
        count = max(1, len(remaining) // VALIDATION_FRACTION)
        valid, remaining = ("train", remaining[-count:]), remaining[:-count]
    plan = {"train": ("train", remaining), "valid": valid, "test": test}
    if source.keep_order:  # sequential sources read each split in stored order
        plan = {name: (part, np.sort(indices)) for name, (part, indices) in plan.items()}
    if limit is not None and limit < len(plan["train"][1]):
        fraction = limit / len(plan["train"][1])
        plan = {name: (part, indices[: limit if name == "train"
                                      else max(1, math.ceil(len(indices) * fraction))])
                for name, (part, indices) in plan.items()}
    return plan


def choose_streaming(streaming: str, sizes: dict[str, int], image_shape: tuple[int, ...],
                     always_fits: bool = False) -> dict[str, bool]:
    """Which splits to stream.

    Args:
        streaming: ``"memory"``, ``"stream"`` or ``"auto"`` (stream when the float32
            images would take more than :func:`stream_threshold` bytes).
        sizes: images per split.
        image_shape: (H, W, C).
        always_fits: ``"auto"`` never streams (the 70,000 IDX images).

    Returns:
        ``{split name: streamed}``. Streaming always streams the training split; the
        validation and test splits too when together they exceed the threshold.
    """
    image_bytes = 4 * math.prod(image_shape)
    threshold = stream_threshold()
    if streaming == "memory" or (streaming == "auto" and (
            always_fits or sum(sizes.values()) * image_bytes <= threshold)):
        return {name: False for name in sizes}
    evaluation = (sizes["valid"] + sizes["test"]) * image_bytes > threshold
    return {"train": True, "valid": evaluation, "test": evaluation}


def _build_splits(source: Source, plan: dict, streamed: dict[str, bool], binarize: str,
                  seed: int) -> dict[str, Split]:
    """The three splits, each loaded or streamed, binarized as ``binarize`` says."""

    def static_seed(name: str) -> int | None:
        # With dynamic binarization only the training images are redrawn (by the
        # pipeline); validation and test images are drawn once so that evaluations are
        # comparable.
        if binarize == "static" or (binarize == "dynamic" and name != "train"):
            return seed
        return None

    splits = {}
    offset = 0  # keys images across parts for static binarization of streamed splits
    for part, reader in source.parts.items():
        mine = [name for name in SPLIT_NAMES if plan[name][0] == part]
        in_memory = [name for name in mine if not streamed[name]]
        # One load per part: tensorflow-datasets reads a part in a single pass.
        loaded = reader.load([plan[name][1] for name in in_memory]) if in_memory else []
        for name, (images, labels) in zip(in_memory, loaded, strict=True):
            if static_seed(name) is not None:
                images = binarize_static(images, seed)
            splits[name] = Split(images, labels)
        for name in mine:
            if streamed[name]:
                indices = plan[name][1]
                labels = reader.read_labels()
                stream = Stream(reader, indices, offset + indices, static_seed(name))
                splits[name] = Split(labels=None if labels is None else labels[indices],
                                     stream=stream)
        offset += reader.count
    return splits


def load_dataset(
    dataset: str = "fashion_mnist",
    data_dir: str | None = None,
    limit: int | None = None,
    binarize: str = "none",
    seed: int = 42,
    download: bool = False,
    *,
    images: str | os.PathLike | None = None,
    npz: str | os.PathLike | None = None,
    image_size: tuple[int, int] | None = None,
    color: str | None = None,
    streaming: str = "auto",
) -> Dataset:
    """Train, validation and test images in [0, 1] from one source (see the package doc).

    Args:
        dataset: ``fashion_mnist`` or ``mnist`` (IDX files, HOML's split), or any other
            tensorflow-datasets name (a prepared copy, or ``download``).
        data_dir: a directory with the four IDX files; overrides every other place an IDX
            data set is looked for.
        limit: keep the first ``limit`` training images and proportionally fewer
            validation and test images (at least one each), for smoke runs and tests.
        binarize: ``none``; ``static`` draws each pixel once from Bernoulli(intensity) with
            ``seed`` (the same binary images every epoch); ``dynamic`` leaves the training
            images gray for the pipeline to redraw every epoch, and draws the validation
            and test images once, like ``static``.
        seed: for static binarization.
        download: allow tensorflow-datasets to download (needs network).
        images: a folder of images; used instead of ``dataset`` when given.
        npz: a .npz archive of images; used instead of ``dataset`` when given (and
            ``images`` is not).
        image_size: (height, width) to resize every image to; None keeps their size.
        color: ``"grayscale"`` or ``"rgb"`` to convert every image; None keeps their
            channels.
        streaming: ``"memory"``, ``"stream"`` or ``"auto"`` (see the package doc).

    Returns:
        A :class:`Dataset`.

    Raises:
        DataError: for arguments, sources and files that cannot be used; the message says
        what was found, what was expected and what to do.

    Example:
        >>> data = load_dataset("fashion_mnist", limit=2000)
        >>> data.train.images.shape
        (2000, 28, 28, 1)
        >>> load_dataset(images="photos/", image_size=(64, 64), color="rgb").describe()
        'photos (64×64×3) from photos: ...'
    """
    image_size = _check_arguments(limit, binarize, color, streaming, image_size)
    is_idx = images is None and npz is None and dataset in IDX_DATASETS
    if images is not None:
        source = open_folder(images, image_size, color)
    elif npz is not None:
        source = open_npz(npz, image_size, color)
    elif is_idx:
        source = open_idx(dataset, data_dir, download, image_size, color)
    else:
        if data_dir:
            raise DataError(
                f"data_dir (--data-dir) {data_dir} is for the IDX files of "
                f"{' and '.join(IDX_DATASETS)}; for tensorflow-datasets {dataset!r} set "
                f"TFDS_DATA_DIR instead, or pass a folder of images as images=.")
        source = open_tfds(dataset, download, image_size, color)
    plan = homl_plan(source, limit) if is_idx else plan_splits(source, limit)
    available = len(plan["train"][1])
    if limit is not None and limit > available:
        # Not an error (a smoke command works on any data set), but never silent.
        print(f"note: limit {limit:,} (--limit) is more than the {available:,} training "
              f"images of {source.name}; training on all {available:,}.", file=sys.stderr)
    sizes = {name: len(indices) for name, (_, indices) in plan.items()}
    streamed = choose_streaming(streaming, sizes, source.image_shape, always_fits=is_idx)
    splits = _build_splits(source, plan, streamed, binarize, seed)
    return Dataset(name=source.name, source=source.where, image_shape=source.image_shape,
                   class_names=source.class_names, **splits)


def load_for_config(config) -> Dataset:
    """:func:`load_dataset` with the source, ``limit``, ``binarize`` and ``seed`` of a config.

    Args:
        config: anything with the attributes ``SOURCE_FIELDS``, ``limit``, ``binarize``
            and ``seed`` (:class:`hml_vae.config.Config`).
    """
    source = {field: getattr(config, field) for field in SOURCE_FIELDS}
    # None: the family decides once the image shape is known (hml_vae.training.load_data).
    return load_dataset(limit=config.limit, binarize=config.binarize or "none",
                        seed=config.seed, **source)
