"""Image data sets for the autoencoders: four kinds of source, one split rule, memory or stream.

Every source gives float32 images in [0, 1] of shape (N, H, W, C), with C = 1 (grayscale)
or 3 (RGB) and H, W >= 8, and int64 labels (N,) when it has labels.
:func:`load_dataset` reads exactly one source: ``images`` if given, else ``npz`` if given,
else ``dataset``.

Sources
    1. **IDX files** (``dataset="fashion_mnist"`` or ``"mnist"``): 28×28×1, found in
       ``--data-dir`` / ``HML_VAE_DATA_DIR``, the Debian package directory, or
       tensorflow-datasets (:mod:`hml_vae.data.idx`).
    2. **tensorflow-datasets** by any other name (``dataset="cifar10"``): a copy prepared
       in ``TFDS_DATA_DIR``, offline, or a download with ``download=True``
       (:mod:`hml_vae.data.tfds_source`).
    3. **a folder of images** (``images=DIR``): class subfolders give labels, a flat folder
       has none (:mod:`hml_vae.data.folder`).
    4. **a .npz archive** (``npz=FILE``) with ``images`` and optional ``labels`` and
       ``class_names`` (:mod:`hml_vae.data.npz`).

    ``image_size=(H, W)`` resizes (bilinear) and ``color="grayscale"|"rgb"`` converts the
    images of any source; without them a source must have one size and channel count.

Splits
    - Fashion-MNIST / MNIST: HOML's split, the first 55,000 training images for training,
      the last 5,000 for validation, the 10,000 test images for testing.
    - A source with its own test split (most tensorflow-datasets): that is the test split;
      validation is the source's validation split if it has one, else the last 1/12 of its
      training images (5,000 of 60,000, as in HOML).
    - A source without one (folders, .npz): a permutation of all images with a fixed seed
      (``SPLIT_SEED``, not the run's seed, so that a folder's split is a property of the
      data) puts its last 1/7 in the test split (10,000 of 70,000), the last 1/12 of the
      rest in the validation split and the remainder in the training split, each in the
      permutation's order. Data sets from tensorflow-datasets are read sequentially, so
      their splits keep the stored order, which tfds shuffled when it prepared them.
    - ``limit`` keeps the first ``limit`` training images and the same fraction of the
      validation and test images (at least one each).

Binarization
    ``"static"`` draws every pixel once from Bernoulli(intensity) with the seed;
    ``"dynamic"`` keeps the training images gray for the pipeline to redraw every epoch and
    draws validation and test images once. In memory the draw is
    :func:`binarize_static` over the whole array; streamed, each image's draw is keyed by
    the seed and the image's index in the source (the same distribution, other draws).

Memory or streaming
    ``streaming="memory"`` loads every split into NumPy arrays. ``"stream"`` keeps the
    training split as a ``tf.data`` pipeline that reads its files as it goes (parallel
    decoding, a bounded shuffle buffer or an index permutation, prefetching), and the
    validation and test splits too when together they would take more than the
    threshold below. ``"auto"`` streams when the float32 images to load (after ``limit``) would
    take more than ``STREAM_BYTES`` (a quarter of the physical memory; the
    ``HML_VAE_STREAM_BYTES`` environment variable overrides it) and never streams
    Fashion-MNIST / MNIST. Every
    :class:`Split` answers ``head``, ``batches`` and ``pipeline`` alike, in memory or
    streamed; only ``images`` needs an in-memory split.

Example:
    >>> from hml_vae.data import load_dataset
    >>> data = load_dataset("fashion_mnist", limit=2000)
    >>> data.describe()
    'fashion_mnist (28×28×1) from /usr/share/datasets/fashion-mnist: 2,000 train, ...'
    >>> train = data.train.pipeline(batch_size=128, shuffle=True, seed=42)
"""

from hml_vae.data.dataset import DataError, Dataset, Split
from hml_vae.data.idx import (
    CLASS_NAMES,
    DATA_DIR_VARIABLE,
    DEBIAN_DIRS,
    DEBIAN_PACKAGES,
    IDX_DATASETS,
    IDX_FILES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    TEST_SIZE,
    TRAIN_SIZE,
    VALIDATION_SIZE,
    read_idx,
    read_idx_directory,
)
from hml_vae.data.loading import (
    BINARIZATIONS,
    COLORS,
    SOURCE_FIELDS,
    SPLIT_SEED,
    STREAM_BYTES,
    STREAM_BYTES_VARIABLE,
    STREAMING,
    load_dataset,
    load_for_config,
    stream_threshold,
)
from hml_vae.data.pipeline import batch_count, binarize_static, make_pipeline

# The name hml_vae.config and the scripts import today; IDX_DATASETS is the new name, as
# "dataset" now also takes any tensorflow-datasets name.
DATASETS = IDX_DATASETS

__all__ = [
    "BINARIZATIONS",
    "CLASS_NAMES",
    "COLORS",
    "DATASETS",
    "DATA_DIR_VARIABLE",
    "DEBIAN_DIRS",
    "DEBIAN_PACKAGES",
    "IDX_DATASETS",
    "IDX_FILES",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "SOURCE_FIELDS",
    "SPLIT_SEED",
    "STREAMING",
    "STREAM_BYTES",
    "STREAM_BYTES_VARIABLE",
    "TEST_SIZE",
    "TRAIN_SIZE",
    "VALIDATION_SIZE",
    "DataError",
    "Dataset",
    "Split",
    "batch_count",
    "binarize_static",
    "load_dataset",
    "load_for_config",
    "make_pipeline",
    "read_idx",
    "read_idx_directory",
    "stream_threshold",
]
