"""tf.data pipelines of (x, x) batches for autoencoder training, and binarization.

A training pipeline is a stream of epochs: epoch ``e``'s order and binary draws are a pure
function of ``(seed, e)``, and the epoch index is an element of the stream. So a run
resumed at epoch ``e`` reads exactly the batches an uninterrupted run reads in its epoch
``e``, however often ``fit`` creates iterators.
"""

from __future__ import annotations

import numpy as np

# What a stateless key is for: keys of different uses never coincide.
_ORDER, _BINARIZE, _SHUFFLE_BUFFER = 1, 2, 3


def binarize_static(images: np.ndarray, seed: int) -> np.ndarray:
    """One fixed Bernoulli draw per pixel (p = intensity), the same for every epoch.

    Args:
        images: float32 in [0, 1], any shape.
        seed: fixes the draw.

    Returns:
        float32 array of 0s and 1s, the shape of ``images``.
    """
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


def binarize_by_key(image, key, seed: int):
    """Static binarization of one streamed image: a Bernoulli draw fixed by (seed, key).

    Each image of a source has its own ``key`` (its index in the source), so the draw
    does not depend on the order in which images are read, nor on ``limit``.
    """
    import tensorflow as tf

    stateless_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(key, tf.int64)])
    noise = tf.random.stateless_uniform(tf.shape(image), seed=stateless_seed)
    return tf.cast(noise < image, tf.float32)


def epoch_key(seed: int, use: int, *indices):
    """A stateless random seed (int64 (2,)) that is a pure function of ``seed``, the key's
    ``use`` and ``indices`` (the epoch, then the batch): the same in every process."""
    import tensorflow as tf

    key = tf.constant([seed, use], tf.int64)
    for index in indices:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))
    return key


def epoch_order(count: int, seed: int, epoch):
    """The indices 0..count-1 (int32) in epoch ``epoch``'s order, fixed by ``seed``.

    Shuffling indices rather than images costs no buffer memory.
    """
    import tensorflow as tf

    return tf.random.experimental.stateless_shuffle(tf.range(count),
                                                    seed=epoch_key(seed, _ORDER, epoch))


def shuffle_buffer_seed(seed: int, epoch):
    """The seed of a shuffle buffer in epoch ``epoch`` (for sources read in order)."""
    import tensorflow as tf

    # One number drawn from the key: the key's own elements do not each depend on both
    # the seed and the epoch.
    return tf.random.stateless_uniform([], epoch_key(seed, _SHUFFLE_BUFFER, epoch),
                                       minval=None, maxval=None, dtype=tf.int64)


def epoch_indices(first_epoch=0, epochs: int | None = 1):
    """A ``tf.data`` dataset of epoch indices: ``first_epoch``, ``first_epoch + 1``, ...

    Args:
        first_epoch: an int, or an int64 ``tf.Variable`` read when an iteration starts
            (how ``fit`` tells a pipeline the epoch it is at: :mod:`hml_vae.training`).
        epochs: how many; None: endless.
    """
    import tensorflow as tf

    # Read in the dataset's own function, so a variable is read when an iteration starts.
    start = tf.data.Dataset.from_tensors(0).map(
        lambda _: tf.cast(tf.convert_to_tensor(first_epoch), tf.int64))
    if epochs is None:
        return start.flat_map(tf.data.Dataset.counter)
    return start.flat_map(lambda first: tf.data.Dataset.range(first, first + epochs))


def _redraw(batch, epoch, index, seed: int):
    """Dynamic binarization of one batch: fresh binary pixels keyed by (seed, epoch,
    batch index), so reproducible runs whose binary images change each epoch."""
    import tensorflow as tf

    noise = tf.random.stateless_uniform(tf.shape(batch),
                                        seed=epoch_key(seed, _BINARIZE, epoch, index))
    return tf.cast(noise < batch, tf.float32)


def _finish(dataset, batches: int, epochs: int | None):
    """(x, x) pairs, a length Keras can see, and prefetching."""
    import tensorflow as tf

    dataset = dataset.map(lambda x: (x, x))
    # Keras (and training's fit arguments) need the number of batches; tf.data cannot
    # infer it through flat_map or a streamed source.
    length = tf.data.INFINITE_CARDINALITY if epochs is None else batches * epochs
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(length))
    return dataset.prefetch(tf.data.AUTOTUNE)


def batch_count(count: int, batch_size: int, full_batches: bool = False) -> int:
    """Batches per epoch of ``count`` images (fewer images than one batch still give one)."""
    return _batch_count(count, batch_size, full_batches)[0]


def _batch_count(count: int, batch_size: int, full_batches: bool) -> tuple[int, bool]:
    """(number of batches, drop_remainder): fewer images than one batch still give one."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    drop_remainder = full_batches and count >= batch_size
    return (count // batch_size if drop_remainder else -(-count // batch_size)), drop_remainder


def make_pipeline(
    images: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 42,
    binarize: str = "none",
    image_shape: tuple[int, ...] | None = None,
    full_batches: bool = False,
    first_epoch=0,
    epochs: int | None = 1,
):
    """A ``tf.data`` pipeline of ``(x, x)`` batches from an in-memory array.

    The pipeline holds ``epochs`` epochs from ``first_epoch`` on. Each batch is gathered
    from one tensor of the images by index: shuffling permutes the indices (each epoch
    in its own order, fixed by ``seed`` and the epoch's index) rather than passing
    55,000 single images through a shuffle buffer, which cost more CPU than the dense
    VAE's training step can spare on 2 cores (benchmarks/throughput.py).
    ``binarize="dynamic"`` draws fresh binary pixels for every batch of every epoch;
    ``"static"`` and ``"none"`` leave the images as they are. Iterating the same pipeline
    again reads the same epochs again: for ``fit``, build it with ``epochs`` (or the
    epoch from a variable) as :func:`hml_vae.training.fit_arguments` does.

    Args:
        images: float32 (N, ...) in [0, 1], e.g. (N, 28, 28, 1).
        batch_size: images per batch (the last batch may be smaller).
        image_shape: per-image shape the model expects, e.g. (784,) for dense models;
            None keeps the array's own per-image shape.
        full_batches: leave out the last, smaller batch (when there is a full one), so
            that every batch has ``batch_size`` images. For training: an XLA-compiled step
            sees one shape instead of two, which on CPU made every step ~2x slower and
            compiled it again in the second epoch (benchmarks/throughput.py). Shuffled,
            a different few images (< batch_size) are left out each epoch.
        first_epoch: the index of the first epoch: an int, or an int64 ``tf.Variable``
            read each time an iteration starts.
        epochs: how many epochs the pipeline holds, one after the other; None: endless.

    Returns:
        A ``tf.data.Dataset`` of ``(x, x)`` float32 batches with a known cardinality
        (batches per epoch × ``epochs``, or infinite).

    Example:
        >>> train = make_pipeline(data.train.images, 128, shuffle=True, seed=42)
        >>> epoch_three = make_pipeline(data.train.images, 128, shuffle=True, first_epoch=3)
    """
    import tensorflow as tf

    count = len(images)
    batches, _ = _batch_count(count, batch_size, full_batches)
    tensor = tf.constant(images if image_shape is None else images.reshape((-1, *image_shape)))

    def epoch_batches(epoch):  # -> (first image, indices or None, epoch, batch index)
        order = epoch_order(count, seed, epoch) if shuffle else None

        def batch(index):
            start = tf.cast(index, tf.int32) * batch_size
            return (start if order is None else order[start : start + batch_size]), epoch, index

        return tf.data.Dataset.range(batches).map(batch)

    def load(where, epoch, index):
        images = (tensor[where : where + batch_size] if not shuffle
                  else tf.gather(tensor, where))
        return _redraw(images, epoch, index, seed) if binarize == "dynamic" else images

    dataset = epoch_indices(first_epoch, epochs).flat_map(epoch_batches)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return _finish(dataset, batches, epochs)


def stream_pipeline(stream, batch_size: int, shuffle: bool = False, seed: int = 42,
                    binarize: str = "none", full_batches: bool = False, first_epoch=0,
                    epochs: int | None = 1):
    """The streamed counterpart of :func:`make_pipeline`: images are read as they are used.

    Args:
        stream: a :class:`hml_vae.data.readers.Stream`.
        batch_size, shuffle, seed, binarize, full_batches, first_epoch, epochs: as for
            :func:`make_pipeline`. Shuffling gives each epoch its own order, fixed by
            ``seed`` and the epoch's index; sources that can read any image directly
            (folders, arrays) shuffle exactly like :func:`make_pipeline`, sequential ones
            (tensorflow-datasets) through a bounded shuffle buffer.

    Returns:
        A ``tf.data.Dataset`` of ``(x, x)`` float32 batches with a known cardinality.
    """
    import tensorflow as tf

    batches, drop_remainder = _batch_count(stream.count, batch_size, full_batches)
    read_epoch = stream.epoch_images(shuffle=shuffle, seed=seed)

    def epoch_batches(epoch):  # -> (batch, epoch, batch index)
        return read_epoch(epoch).batch(batch_size, drop_remainder).enumerate().map(
            lambda index, batch: (batch, epoch, index))

    def finish(batch, epoch, index):
        return _redraw(batch, epoch, index, seed) if binarize == "dynamic" else batch

    dataset = epoch_indices(first_epoch, epochs).flat_map(epoch_batches)
    dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return _finish(dataset, batches, epochs)
