"""tf.data pipelines of (x, x) batches for autoencoder training, and binarization."""

from __future__ import annotations

import numpy as np


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


def epoch_permutations(count: int, seed: int):
    """A ``tf.data`` dataset of the indices 0..count-1, in a new order each epoch.

    One random integer per epoch, new every epoch but fixed by ``seed``, keys a stateless
    permutation: shuffling indices rather than images costs no buffer memory.
    """
    import tensorflow as tf

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)

    def permutation(key):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([key, 1]))  # [key, 0] binarizes
        return tf.data.Dataset.from_tensor_slices(order)

    return keys.flat_map(permutation)


def _redraw_each_batch(dataset, seed: int):
    """Dynamic binarization: fresh binary pixels for every batch of every epoch.

    One random integer per batch, new every epoch but fixed by the seed, keys a stateless
    draw: reproducible runs whose binary images change each epoch.
    """
    import tensorflow as tf

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def draw(batch, key):
        noise = tf.random.stateless_uniform(tf.shape(batch), seed=tf.stack([key, 0]))
        return tf.cast(noise < batch, tf.float32)

    return tf.data.Dataset.zip(dataset, keys).map(draw, num_parallel_calls=tf.data.AUTOTUNE)


def _finish(dataset, batches: int):
    """(x, x) pairs, a length Keras can see, and prefetching."""
    import tensorflow as tf

    dataset = dataset.map(lambda x: (x, x))
    # Keras (and training's fit arguments) need the number of batches; tf.data cannot
    # infer it through flat_map or a streamed source.
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.prefetch(tf.data.AUTOTUNE)


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
):
    """A ``tf.data`` pipeline of ``(x, x)`` batches from an in-memory array.

    The images are held as one tensor and each batch is gathered from it by index:
    shuffling permutes the indices (a new permutation each epoch, fixed by ``seed``)
    rather than passing 55,000 single images through a shuffle buffer, which cost more
    CPU than the dense VAE's training step can spare on 2 cores
    (benchmarks/throughput.py). ``binarize="dynamic"`` draws fresh binary pixels every
    epoch; ``"static"`` and ``"none"`` leave the images as they are.

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

    Returns:
        A ``tf.data.Dataset`` of ``(x, x)`` float32 batches with a known cardinality.

    Example:
        >>> train = make_pipeline(data.train.images, 128, shuffle=True, seed=42)
    """
    import tensorflow as tf

    count = len(images)
    batches, drop_remainder = _batch_count(count, batch_size, full_batches)
    tensor = tf.constant(images if image_shape is None else images.reshape((-1, *image_shape)))
    if shuffle:
        dataset = epoch_permutations(count, seed).batch(batch_size, drop_remainder)
        dataset = dataset.map(lambda indices: tf.gather(tensor, indices))
    else:
        end = count - count % batch_size if drop_remainder else count
        dataset = tf.data.Dataset.range(0, end, batch_size).map(
            lambda start: tensor[start : start + batch_size])
    if binarize == "dynamic":
        dataset = _redraw_each_batch(dataset, seed)
    return _finish(dataset, batches)


def stream_pipeline(stream, batch_size: int, shuffle: bool = False, seed: int = 42,
                    binarize: str = "none", full_batches: bool = False):
    """The streamed counterpart of :func:`make_pipeline`: images are read as they are used.

    Args:
        stream: a :class:`hml_vae.data.readers.Stream`.
        batch_size, shuffle, seed, binarize, full_batches: as for :func:`make_pipeline`.
            Shuffling draws a new order each epoch, fixed by ``seed``; sources that can
            read any image directly (folders, arrays) shuffle exactly like
            :func:`make_pipeline`, sequential ones (tensorflow-datasets) through a
            bounded shuffle buffer.

    Returns:
        A ``tf.data.Dataset`` of ``(x, x)`` float32 batches with a known cardinality.
    """
    batches, drop_remainder = _batch_count(stream.count, batch_size, full_batches)
    dataset = stream.images(shuffle=shuffle, seed=seed).batch(batch_size, drop_remainder)
    if binarize == "dynamic":
        dataset = _redraw_each_batch(dataset, seed)
    return _finish(dataset, batches)
