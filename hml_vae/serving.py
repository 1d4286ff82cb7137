"""Clients of a running TensorFlow Serving: REST (JSON) and gRPC (``PredictRequest``).

REST needs only the standard library and NumPy. gRPC needs the ``tensorflow-serving-api``
package (in requirements.txt); without it :func:`grpc_predict` raises a
:class:`ServingError` that says how to install it, and REST still works.

Three ways to send pictures, each to its own signature (see :mod:`hml_vae.export`):

- float32 images (batch, H, W, C) in [0, 1] of the served model's image shape
  (Fashion-MNIST: (28, 28, 1)) to ``serving_default``/``encode``; checked before they are
  sent (:func:`hml_vae.export.check_request_images`) against ``image_shape`` when given;
- PNG/JPEG files (their bytes; any size, gray or colour) to
  ``reconstruct_image_bytes``/``encode_image_bytes``: :func:`rest_predict_files`,
  :func:`grpc_predict_files`;
- uint8 pixels (batch, H, W, C) to ``reconstruct_uint8``/``encode_uint8``.

REST requests use TF Serving's row ("instances") format::

    POST /v1/models/NAME[/versions/N]:predict
    {"signature_name": "serving_default", "instances": [[[[0.0], ...], ...], ...]}
    {"signature_name": "reconstruct_image_bytes",
     "instances": [{"image_bytes": {"b64": "iVBORw0KGgo..."}}, ...]}

and the answer is ``{"predictions": [...]}``: one value per image for a signature with a
single output, one ``{output: value}`` object per image for several outputs.

Example:
    >>> outputs, seconds = rest_predict("http://localhost:8501", "fashion_vae", images,
    ...                                 image_shape=(28, 28, 1))
    >>> outputs["reconstruction"].shape
    (8, 28, 28, 1)
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import numpy as np

# Per kind of request, the signatures the client calls: (reconstruct, encode), and the
# input's name.
REQUEST_KINDS = {
    "float32": (("serving_default", "encode"), "images"),
    "uint8": (("reconstruct_uint8", "encode_uint8"), "pixels"),
    "image_bytes": (("reconstruct_image_bytes", "encode_image_bytes"), "image_bytes"),
}
# The output of the signatures that have a single one: the REST row format drops its name.
SINGLE_OUTPUTS = {"serving_default": "reconstruction", "reconstruct_uint8": "reconstruction",
                  "reconstruct_image_bytes": "reconstruction", "decode": "images"}


class ServingError(RuntimeError):
    """The server answered with an error, could not be reached, or a client is missing."""


def predict_url(server: str, model: str, version: int | None = None) -> str:
    """``http://host:8501/v1/models/NAME[/versions/N]:predict``."""
    versioned = f"/versions/{version}" if version is not None else ""
    return f"{server.rstrip('/')}/v1/models/{model}{versioned}:predict"


def check_signature(signature_name: str, kind: str = "float32") -> str:
    """``signature_name`` if it takes requests of ``kind``, else ValueError."""
    signatures, _ = REQUEST_KINDS[kind]
    if signature_name not in signatures:
        raise ValueError(f"the client sends {kind} images, so it calls "
                         f"{' or '.join(signatures)}; got signature {signature_name!r}.")
    return signature_name


def request_images(images, image_shape=None) -> np.ndarray:
    """``images`` checked for a model of ``image_shape`` (H, W, C), or, when it is None,
    for being a batch (batch, H, W, C) of some image shape.

    Raises:
        ValueError: what is wrong and which conversion is missing.
    """
    from hml_vae.export.requests import check_request_images

    if image_shape is None:
        shape = np.shape(images)
        if len(shape) != 4:
            raise ValueError(f"expected a batch of images (batch, H, W, C), got shape {shape}; "
                             f"pass image_shape=(H, W, C) of the served model to be told "
                             f"which conversion is missing.")
        image_shape = shape[1:]
    return check_request_images(images, image_shape)


def request_inputs(kind: str, images) -> dict[str, np.ndarray]:
    """The named inputs of a request of ``kind``: float32 images (checked), uint8 pixels,
    or a list of file contents (bytes)."""
    _, name = REQUEST_KINDS[kind]
    if kind == "image_bytes":
        files = list(images)
        if not files or not all(isinstance(data, bytes) for data in files):
            raise ValueError("image_bytes requests hold the bytes of one or more PNG or JPEG "
                             "files.")
        return {name: np.asarray(files, dtype=object)}
    if kind == "uint8":
        pixels = np.asarray(images)
        if pixels.dtype != np.uint8 or pixels.ndim != 4:
            raise ValueError(f"uint8 requests hold pixels uint8 (batch, H, W, C), got "
                             f"{pixels.dtype} of shape {pixels.shape}.")
        return {name: pixels}
    return {name: images}


def _json_value(value):
    """A request value in TF Serving's JSON: binary strings as ``{"b64": ...}``."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value.tolist() if isinstance(value, np.ndarray) else value


def rest_request_body(images, signature_name: str = "serving_default",
                      image_shape=None, kind: str = "float32") -> dict:
    """The JSON body of a REST predict request.

    Args:
        images: float pixels in [0, 1] (batch, H, W, C) for ``float32``; uint8 pixels for
            ``uint8``; a list of PNG/JPEG file contents for ``image_bytes``.
        signature_name: one of the signatures of ``kind`` (:data:`REQUEST_KINDS`).
        image_shape: the served model's (H, W, C), to check float images against.
        kind: ``float32``, ``uint8`` or ``image_bytes``.

    Raises:
        ValueError: images of another shape or dtype (the message says which is expected).
    """
    check_signature(signature_name, kind)
    if kind == "float32":
        images = request_images(images, image_shape)
        return {"signature_name": signature_name, "instances": images.tolist()}
    (name, values), = request_inputs(kind, images).items()
    return {"signature_name": signature_name,
            "instances": [{name: _json_value(value)} for value in values]}


def parse_rest_predictions(answer: dict, signature_name: str) -> dict[str, np.ndarray]:
    """``{"predictions": [...]}`` -> ``{output name: array}``."""
    if "error" in answer:
        raise ServingError(f"TF Serving answered: {answer['error']}")
    if "predictions" not in answer:
        raise ServingError(f"expected a JSON object with 'predictions', got keys "
                           f"{sorted(answer)}.")
    rows = answer["predictions"]
    if rows and isinstance(rows[0], dict):  # several outputs: one object per image
        return {key: np.asarray([row[key] for row in rows], np.float32) for key in rows[0]}
    return {SINGLE_OUTPUTS.get(signature_name, "predictions"): np.asarray(rows, np.float32)}


def post_json(url: str, body: dict, timeout: float, server: str) -> dict:
    """POSTs ``body`` as JSON; the JSON answer, or ServingError (one line) saying what the
    server answered or why it could not be reached."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise ServingError(f"TF Serving answered HTTP {error.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ServingError(f"cannot reach {server}: {error}. Is TF Serving running with "
                           f"-p 8501:8501?") from None


def rest_predict(server: str, model: str, images, signature_name: str = "serving_default",
                 version: int | None = None, timeout: float = 30.0, image_shape=None,
                 kind: str = "float32"):
    """Sends images to TF Serving's REST API.

    Args:
        server: ``http://host:port`` (TF Serving's REST port is 8501).
        model: the served model's name.
        images: what :func:`rest_request_body` takes for ``kind``.
        signature_name: a signature of ``kind`` (reconstruct or encode).
        version: a version to ask for (default: the one the server serves).
        timeout: seconds to wait for the answer.
        image_shape: the served model's (H, W, C), to check float images against before
            sending them (default: the server checks them).
        kind: ``float32`` (default), ``uint8`` or ``image_bytes``.

    Returns:
        (outputs by name, seconds the request took including JSON encoding).

    Raises:
        ServingError: the server is unreachable or answered with an error.
    """
    started = time.perf_counter()
    body = rest_request_body(images, signature_name, image_shape, kind)
    answer = post_json(predict_url(server, model, version), body, timeout, server)
    return parse_rest_predictions(answer, signature_name), time.perf_counter() - started


def _grpc_modules():
    try:
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as error:
        raise ServingError(
            f"gRPC needs the tensorflow-serving-api package ({error}); install it with "
            f"`pip install tensorflow-serving-api`, or use REST."
        ) from None
    return grpc, predict_pb2, prediction_service_pb2_grpc


def grpc_request(model: str, images, signature_name: str = "serving_default",
                 version: int | None = None, image_shape=None, kind: str = "float32"):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` (arguments as
    :func:`rest_predict`)."""
    import tensorflow as tf

    _, predict_pb2, _ = _grpc_modules()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = check_signature(signature_name, kind)
    if version is not None:
        request.model_spec.version.value = version
    if kind == "float32":
        images = request_images(images, image_shape)
    for name, value in request_inputs(kind, images).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(
            list(value) if kind == "image_bytes" else value,
            dtype=tf.string if kind == "image_bytes" else None))
    return request


def grpc_predict(target: str, model: str, images, signature_name: str = "serving_default",
                 version: int | None = None, timeout: float = 30.0, image_shape=None,
                 kind: str = "float32"):
    """Sends images to TF Serving's gRPC API (``PredictionService/Predict``).

    Args:
        target: ``host:port`` (TF Serving's gRPC port is 8500).
        Others as :func:`rest_predict`.

    Returns:
        (outputs by name, seconds the request took including tensor conversion).
    """
    import tensorflow as tf

    grpc, _, prediction_service_pb2_grpc = _grpc_modules()
    started = time.perf_counter()
    request = grpc_request(model, images, signature_name, version, image_shape, kind)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as error:
        raise ServingError(f"gRPC Predict to {target} failed: {error.code().name}: "
                           f"{error.details()}") from None
    outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
    return outputs, time.perf_counter() - started
