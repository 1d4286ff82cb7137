"""Requests as TF Serving runs them: a SavedModel in TensorFlow's C++ session, fed
unchecked, and the bad requests every signature must refuse with a clear message.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from pathlib import Path

import numpy as np

from hml_vae.export.checks import (
    JPEG_SIGNATURE,
    MAX_CODING_MAGNITUDE,
    MAX_GENERATE_COUNT,
    MAX_IMAGE_BYTES,
    PNG_SIGNATURE,
    format_batch_shape,
)


class ServingSession:
    """A SavedModel loaded into TensorFlow's C++ session and fed as TF Serving feeds it.

    TF Serving runs a signature with ``Session::Run`` on a request's tensors as they are;
    unlike the functions of ``tf.saved_model.load``, nothing compares their shape with the
    signature's first. This shows what a server answers to a bad request.

    Example:
        >>> with ServingSession("saved_models/vae/1") as session:
        ...     session.run("serving_default", {"images": np.zeros((1, 28, 28))})
        InvalidArgumentError: assertion failed: [images must be float32 of shape (batch,
        28, 28, 1) in [0, 1]; got shape [1 28 28]] ...
    """

    def __init__(self, savedmodel_dir: str | Path):
        import tensorflow as tf

        self.path = Path(savedmodel_dir)
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # the TF1 loader's deprecation notice
        try:
            with self.graph.as_default():
                meta_graph = tf.compat.v1.saved_model.load(self.session, ["serve"],
                                                           str(self.path))
        finally:
            logger.setLevel(level)
        self.signatures = dict(meta_graph.signature_def)
        self._callables = {}

    def run(self, signature_name: str, inputs: dict) -> dict[str, np.ndarray]:
        """The outputs of a signature for ``inputs`` (arrays fed with their own shape and
        dtype); ``tf.errors.InvalidArgumentError`` when the graph rejects them."""
        from tensorflow.core.protobuf import config_pb2

        signature = self.signatures[signature_name]
        names, outputs = sorted(inputs), sorted(signature.outputs)
        key = (signature_name, tuple(names))
        if key not in self._callables:
            options = config_pb2.CallableOptions(
                feed=[signature.inputs[name].name for name in names],
                fetch=[signature.outputs[name].name for name in outputs])
            # Session::MakeCallable: unlike Session.run, whose Python feed handling converts
            # and checks each value against its placeholder, it feeds the arrays as given.
            self._callables[key] = self.session._make_callable_from_options(options)
        values = self._callables[key](*(np.asarray(inputs[name]) for name in names))
        return {name: np.asarray(value) for name, value in zip(outputs, values, strict=True)}

    def close(self) -> None:
        self._callables.clear()
        self.session.close()

    def __enter__(self) -> ServingSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class BadRequest:
    """A request breaking one rule of a signature, and the words its error must contain."""

    signature: str
    problem: str
    inputs: dict
    error_words: tuple[str, ...]


def _valid_input(key: str, dtype, dims: list[int], image_shape) -> np.ndarray:
    if not dims:
        return np.asarray(2 if key == "count" else 0, dtype)
    if key == "image_bytes":
        return np.asarray([_png(np.full(image_shape, 128, np.uint8))] * 2, dtype=object)
    return np.full((2, *dims[1:]), 0.5, dtype)


def _png(pixels: np.ndarray) -> bytes:
    import tensorflow as tf

    return tf.io.encode_png(pixels).numpy()


def _image_bytes_problems(image_shape):
    """(problem, value, words of the error) for the ways to get ``image_bytes`` wrong."""
    png = _png(np.full(image_shape, 128, np.uint8))
    # A valid PNG header claiming an image far beyond MAX_IMAGE_PIXELS.
    height, width, channels = image_shape
    huge = _png(np.zeros((1, 1, channels), np.uint8))
    huge = huge[:16] + (40_000).to_bytes(4, "big") + (40_000).to_bytes(4, "big") + huge[24:]
    items = {
        "empty": (b"", "image_bytes[1] is empty"),
        "not an image": (b"GIF89a, or any other file", "image_bytes[1] is not a PNG or JPEG"),
        "base64 text": (base64.b64encode(png), "image_bytes[1] is base64 text"),
        "oversized": (PNG_SIGNATURE + bytes(MAX_IMAGE_BYTES),
                      f"at most {MAX_IMAGE_BYTES} are accepted"),
        "40000x40000 pixels": (huge, "image_bytes[1] is a 40000x40000 image"),
        "truncated PNG": (png[: len(png) // 2], "PNG"),
        "truncated JPEG": (JPEG_SIGNATURE + b"\xe0" + bytes(20), "JPEG"),
    }
    problems = [(problem, np.asarray([png, value], dtype=object), (words,))
                for problem, (value, words) in items.items()]
    problems.append(("shape (1, 2)", np.asarray([[png, png]], dtype=object),
                     ("image_bytes must be a string vector (batch,)",)))
    problems.append(("dtype float32", np.zeros(2, np.float32), ("float", "image_bytes")))
    return problems


def _bad_inputs(key: str, dtype, dims: list[int], image_shape):
    """(problem, value, words of the error) for each way to get input ``key`` wrong."""
    if key == "image_bytes":
        return _image_bytes_problems(image_shape)
    other_dtype = {np.float32: np.float64, np.int32: np.int64, np.int64: np.int32,
                   np.uint8: np.float32}[dtype]
    dtype_words = {np.float64: "double", np.float32: "float"}
    wrong_dtype = ("dtype " + np.dtype(other_dtype).name,
                   _valid_input(key, other_dtype, dims, image_shape),
                   (dtype_words.get(other_dtype, np.dtype(other_dtype).name), key))
    if not dims:  # generate's scalars
        scalar = f"{key} must be an {np.dtype(dtype).name} scalar"
        problems = [("shape (1,)", np.zeros(1, dtype), (scalar,)), wrong_dtype]
        if key == "count":
            problems += [("0", np.asarray(0, dtype), ("count must be >= 1",)),
                         (str(MAX_GENERATE_COUNT + 1), np.asarray(MAX_GENERATE_COUNT + 1, dtype),
                          (f"count must be <= {MAX_GENERATE_COUNT}",))]
        return problems
    item = dims[1:]
    wrong_shape = (f"{key} must be {np.dtype(dtype).name} of shape "
                   f"{format_batch_shape(item)}",)
    shapes = {f"shape {(2, *item[:-1])}": (2, *item[:-1]),  # an axis missing
              f"shape {(2, *item, 1)}": (2, *item, 1),  # an axis too many
              "shape (1,)": (1,)}  # a vector
    if len(item) > 1:
        shapes[f"shape {(2, math.prod(item))}"] = (2, math.prod(item))  # flattened
    for axis, size in enumerate(item):  # each dimension wrong; images' channels 1 <-> 3
        changed = [*item]
        changed[axis] = 4 - size if key in ("images", "pixels") and axis == 2 else size + 1
        shapes[f"shape {(2, *changed)}"] = (2, *changed)
    problems = [(problem, np.zeros(shape, dtype), wrong_shape)
                for problem, shape in shapes.items()]
    if dtype == np.uint8:
        return [*problems, wrong_dtype]
    valid = _valid_input(key, dtype, dims, image_shape)
    for name, value in (("NaN", np.nan), ("infinity", np.inf)):
        broken = valid.copy()
        broken.flat[-1] = value
        problems.append((name, broken, (f"{key} must be finite",)))
    if key == "images":
        problems.append(("0-255 pixels", np.full_like(valid, 255.0),
                         ("images must be pixel values in [0, 1]",)))
    else:  # codings
        problems.append(("1e30", np.full_like(valid, 1e30),
                         (f"{key} must be codings with |value| <= {MAX_CODING_MAGNITUDE:g}",)))
    return [*problems, wrong_dtype]


def bad_requests(signatures) -> list[BadRequest]:
    """For each input of each signature (``{name: SignatureDef}``, as
    :attr:`ServingSession.signatures`), a request per way to get it wrong: wrong rank, each
    dimension wrong, NaN, infinity, out of range, another dtype; for image files empty,
    not an image, base64 text, oversized, too many pixels, truncated. The other inputs
    are valid."""
    import tensorflow as tf

    image_dims = signatures["serving_default"].inputs["images"].tensor_shape.dim
    image_shape = tuple(dim.size for dim in image_dims[1:])
    requests = []
    for signature_name in sorted(signatures):
        inputs = signatures[signature_name].inputs
        specs = {key: (tf.as_dtype(info.dtype).as_numpy_dtype,
                       [dim.size for dim in info.tensor_shape.dim])
                 for key, info in inputs.items()}
        valid = {key: _valid_input(key, *spec, image_shape) for key, spec in specs.items()}
        for key, spec in sorted(specs.items()):
            for problem, value, words in _bad_inputs(key, *spec, image_shape):
                requests.append(BadRequest(signature_name, f"{key} {problem}",
                                           {**valid, key: value}, words))
    return requests


def check_rejections(session: ServingSession) -> list[tuple[BadRequest, str]]:
    """Feeds every :func:`bad_requests` request to ``session`` as TF Serving would.

    Returns:
        (request, the first line of its error) for each.

    Raises:
        ValueError: a request was answered, or failed with an error that does not say
            what is wrong with which input.
    """
    import tensorflow as tf

    results, failures = [], []
    for request in bad_requests(session.signatures):
        try:
            session.run(request.signature, request.inputs)
        except tf.errors.InvalidArgumentError as error:
            # The first line is the message; TensorFlow's own (a dtype refused before the
            # graph runs) name the input in the node on the next.
            lines = error.message.strip().splitlines()
            message = lines[0] if all(word in lines[0] for word in request.error_words) \
                else " ".join(" ".join(lines).split())
            if all(word in message for word in request.error_words):
                results.append((request, message))
            else:
                failures.append(f"{request.signature} with {request.problem}: {message}")
        else:
            failures.append(f"{request.signature} answered a request with {request.problem}")
    if failures:
        raise ValueError("bad requests were not rejected with a message naming the input: "
                         + "; ".join(failures))
    return results

