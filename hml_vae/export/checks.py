"""In-graph checks of what a request sends, and the decoding of image requests.

TF Serving feeds a request to the graph without checking it against the signature (a
(batch, H·W·C) request would reach a dense encoder's Flatten and "work"; JSON integers
0-255 become floats unscaled), so every signature checks its inputs in the graph: rank,
each dimension, finiteness and range, with a message naming the input and what it must be,
e.g. ``images must be float32 of shape (batch, 28, 28, 1) in [0, 1]; got shape [1 784]``.
A request of another dtype is refused by TensorFlow before the graph runs.

Image requests (PNG/JPEG file bytes, uint8 pixels) become the float images the other
signatures take: decoded, converted to the run's channels (gray or RGB), resized to its
(H, W) when they differ, divided by 255.
"""

from __future__ import annotations

# Largest ``count`` the generate signature accepts: a typo of a client must not make the
# server allocate gigabytes.
MAX_GENERATE_COUNT = 10_000
# Largest |coding| decode accepts. A VAE's prior is N(0, I) and an autoencoder's codings of
# images in [0, 1] are activations of a few layers, orders of magnitude below this; beyond
# it decoders saturate (1e30 decodes to a black image) instead of saying anything.
MAX_CODING_MAGNITUDE = 1e4
# Limits of one encoded image: its file size, and its pixels (read from the PNG/JPEG
# header before decoding, so that a small file claiming a huge image is refused unread).
MAX_IMAGE_BYTES = 8 * 2**20
MAX_IMAGE_PIXELS = 4096 * 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


def format_batch_shape(shape) -> str:
    """``(batch, 28, 28, 1)``: a batch of items of ``shape``, as the messages print it."""
    return "(" + ", ".join(["batch", *(str(int(size)) for size in shape)]) + ")"


def _runtime_shape(tensor):
    """(shape, rank) of ``tensor`` as fed when the graph runs.

    ``tf.rank`` and ``tf.size(tf.shape(...))`` become constants when the traced TensorSpec
    fixes the rank, so a request of another rank would pass them; TF Serving feeds requests
    of any rank, so the raw ops, which are always evaluated, are used instead.
    """
    import tensorflow as tf

    shape = tf.raw_ops.Shape(input=tensor, out_type=tf.int32)
    return shape, tf.raw_ops.Size(input=shape, out_type=tf.int32)


def _has_shape(shape, rank, expected):
    """Whether a runtime ``shape`` of length ``rank`` is ``expected`` (None: any size)."""
    import tensorflow as tf

    # Padded with zeros so that indexing is safe whatever the rank of the request.
    padded = tf.concat([shape, tf.zeros([len(expected)], tf.int32)], axis=0)
    conditions = [tf.equal(rank, len(expected))]
    conditions += [tf.equal(padded[axis], size) for axis, size in enumerate(expected)
                   if size is not None]
    return tf.reduce_all(tf.stack(conditions))


def _assert(condition, template: str, *values):
    """An Assert failing with ``template`` formatted (``{}``) with the runtime ``values``."""
    import tensorflow as tf

    message = tf.strings.format(template, values, summarize=-1) if values else template
    return tf.debugging.Assert(condition, [message])


def _shape_check(tensor, name: str, shape, what: str = "", dtype_name: str = "float32"):
    """Assert that ``tensor`` is a batch of items of ``shape``."""
    runtime_shape, rank = _runtime_shape(tensor)
    return _assert(_has_shape(runtime_shape, rank, (None, *shape)),
                   f"{name} must be {dtype_name} of shape {format_batch_shape(shape)}{what}; "
                   f"got shape {{}}", runtime_shape)


def _finite_check(tensor, name: str):
    import tensorflow as tf

    bad = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(tensor)), tf.int32))
    return _assert(tf.equal(bad, 0), f"{name} must be finite; got {{}} NaN or infinite "
                   f"values", bad)


def _magnitude_check(tensor, name: str, bound: float):
    import tensorflow as tf

    largest = tf.reduce_max(tf.concat([tf.reshape(tf.abs(tensor), [-1]), [0.0]], axis=0))
    return _assert(largest <= bound, f"{name} must be codings with |value| <= {bound:g}; "
                   f"got |value| up to {{}}", largest)


def _after(tensor, checks, shape):
    """``tensor`` reshaped to ``shape``, computed only once every check (a function
    returning an Assert) passed.

    Each check waits for the one before, so a request breaking several rules is told
    about the first (its shape before its values). The reshape (free for a valid request)
    is what keeps the checks: Grappler unifies the shapes that the shape functions of later
    ops merge (``tf.stack``'s inputs, ...) with the shape of their input, through any
    ``Identity``, and would then fold the shape check of the request into "passed". The
    reshaped tensor has a shape of its own.
    """
    import tensorflow as tf

    done = []
    for check in checks:
        with tf.control_dependencies(done):
            done.append(check())
    with tf.control_dependencies(done):
        return tf.reshape(tensor, shape)


def checked_images(images, image_shape):
    """``images`` after in-graph checks that they are (batch, H, W, C) of ``image_shape``,
    finite and in [0, 1]."""
    import tensorflow as tf

    image_shape = tuple(int(size) for size in image_shape)

    def in_range():
        within = tf.logical_and(tf.reduce_all(images >= 0.0), tf.reduce_all(images <= 1.0))
        return _assert(within, "images must be pixel values in [0, 1] (divide 0-255 "
                       "pixels by 255); got values in [{}, {}]",
                       tf.reduce_min(images), tf.reduce_max(images))

    return _after(images, [lambda: _shape_check(images, "images", image_shape, " in [0, 1]"),
                           lambda: _finite_check(images, "images"),
                           in_range], (-1, *image_shape))


def checked_codings(codings, latent_dim: int, name: str = "z"):
    """``codings`` after in-graph checks that they are (batch, ``latent_dim``), finite and
    at most :data:`MAX_CODING_MAGNITUDE` in absolute value."""
    return _after(codings, [lambda: _shape_check(codings, name, (int(latent_dim),)),
                            lambda: _finite_check(codings, name),
                            lambda: _magnitude_check(codings, name, MAX_CODING_MAGNITUDE)],
                  (-1, int(latent_dim)))


def checked_scalar(value, name: str, dtype_name: str, checks=()):
    """``value`` after an in-graph check that it is a scalar, then ``checks``
    (functions of ``value`` returning an Assert)."""
    shape, rank = _runtime_shape(value)
    scalar = [lambda: _assert(_has_shape(shape, rank, ()),
                              f"{name} must be an {dtype_name} scalar; got shape {{}}", shape)]
    return _after(value, scalar + [lambda check=check: check(value) for check in checks], ())


# generate's bounds on ``count``, checked once it is known to be a scalar.
COUNT_CHECKS = (
    lambda count: _assert(count >= 1, "count must be >= 1; got {}", count),
    lambda count: _assert(count <= MAX_GENERATE_COUNT,
                          f"count must be <= {MAX_GENERATE_COUNT}; got {{}}", count),
)


def images_from_pixels(pixels, image_shape):
    """uint8 ``pixels`` (batch, H, W, C) of ``image_shape``, checked in the graph, as float
    images in [0, 1]."""
    import tensorflow as tf

    image_shape = tuple(int(size) for size in image_shape)
    checked = _after(pixels, [lambda: _shape_check(pixels, "pixels", image_shape,
                                                   " (values 0-255)", "uint8")],
                     (-1, *image_shape))
    return tf.cast(checked, tf.float32) / 255.0


def _first(condition):
    """Index of the first False in a boolean vector (0 when all are True)."""
    import tensorflow as tf

    return tf.argmax(tf.cast(tf.logical_not(condition), tf.int32), output_type=tf.int32)


def _encoded_size(data, is_png):
    """(height, width) int64 from a PNG's IHDR or a JPEG's frame header, before decoding."""
    import tensorflow as tf

    def png():
        # IHDR: width then height, 4 bytes big-endian each, at byte 16. Padded so that a
        # truncated file reads zeros (then fails to decode) instead of failing here.
        header = tf.strings.substr(tf.strings.join([data, b"\0" * 24]), 16, 8)
        octets = tf.cast(tf.io.decode_raw(header, tf.uint8), tf.int64)
        weights = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
        return tf.stack([tf.reduce_sum(octets[4:] * weights),
                         tf.reduce_sum(octets[:4] * weights)])

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    return tf.cond(is_png, png, jpeg)


def images_from_bytes(image_bytes, image_shape):
    """A vector of PNG/JPEG file contents as float images (batch, H, W, C) in [0, 1] of
    ``image_shape``: checked (non-empty, at most :data:`MAX_IMAGE_BYTES` and
    :data:`MAX_IMAGE_PIXELS`, a PNG or JPEG), decoded to C channels (gray <-> RGB
    converted), resized to (H, W) with antialiasing when they differ, divided by 255.

    Images of the run's size are not resampled, so a PNG of pixels ``p`` gives exactly the
    float images ``p / 255``.
    """
    import tensorflow as tf

    height, width, channels = (int(size) for size in image_shape)
    name = "image_bytes"
    hint = "; send the bytes of a PNG or JPEG file (in REST JSON base64-encoded, as b64)"
    shape, rank = _runtime_shape(image_bytes)
    lengths = tf.strings.length(image_bytes)
    starts = tf.strings.substr(image_bytes, 0, 8)
    is_png = tf.equal(starts, PNG_SIGNATURE)
    is_jpeg = tf.equal(tf.strings.substr(image_bytes, 0, 3), JPEG_SIGNATURE)
    is_base64 = tf.logical_or(tf.equal(tf.strings.substr(image_bytes, 0, 8), "iVBORw0K"),
                              tf.equal(tf.strings.substr(image_bytes, 0, 4), "/9j/"))
    checks = [
        lambda: _assert(_has_shape(shape, rank, (None,)), f"{name} must be a string vector "
                        f"(batch,) of PNG or JPEG files; got shape {{}}", shape),
        lambda: _assert(tf.reduce_all(lengths > 0), f"{name}[{{}}] is empty{hint}",
                        _first(lengths > 0)),
        lambda: _assert(tf.reduce_all(lengths <= MAX_IMAGE_BYTES),
                        f"{name}[{{}}] holds {{}} bytes; at most {MAX_IMAGE_BYTES} are "
                        f"accepted: send smaller files", _first(lengths <= MAX_IMAGE_BYTES),
                        tf.reduce_max(lengths)),
        lambda: _assert(tf.logical_not(tf.reduce_any(is_base64)),
                        f"{name}[{{}}] is base64 text, not file bytes: in REST JSON put it "
                        f"in an object under the key b64", _first(tf.logical_not(is_base64))),
        lambda: _assert(tf.reduce_all(tf.logical_or(is_png, is_jpeg)),
                        f"{name}[{{}}] is not a PNG or JPEG file{hint}",
                        _first(tf.logical_or(is_png, is_jpeg))),
    ]
    image_bytes = _after(image_bytes, checks, (-1,))

    def decode(item):
        data, index, png = item
        size = _encoded_size(data, png)
        fits = _assert(size[0] * size[1] <= MAX_IMAGE_PIXELS,
                       f"{name}[{{}}] is a {{}}x{{}} image; at most {MAX_IMAGE_PIXELS} "
                       f"pixels are accepted: send smaller images", index, size[1], size[0])
        with tf.control_dependencies([fits]):
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        image.set_shape((None, None, channels))
        same_size = tf.logical_and(tf.equal(tf.shape(image)[0], height),
                                   tf.equal(tf.shape(image)[1], width))
        pixels = tf.cond(
            same_size,
            lambda: tf.cast(image, tf.float32),
            lambda: tf.clip_by_value(tf.image.resize(tf.cast(image, tf.float32),
                                                     (height, width), antialias=True),
                                     0.0, 255.0))
        return tf.reshape(pixels, (height, width, channels)) / 255.0

    indices = tf.range(tf.size(image_bytes, out_type=tf.int32))
    return tf.map_fn(decode, (image_bytes, indices, tf.reshape(is_png, (-1,))),
                     fn_output_signature=tf.TensorSpec((height, width, channels),
                                                       tf.float32))
