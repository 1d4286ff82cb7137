"""Clients of a running TensorFlow Serving: REST (JSON) and gRPC (``PredictRequest``).

REST needs only the standard library and NumPy. gRPC needs the ``tensorflow-serving-api``
package (in requirements.txt); without it :func:`grpc_predict` raises a
:class:`ServingError` that says how to install it, and REST still works.

Requests hold float32 images (batch, H, W, C) in [0, 1] of the served model's image shape
(Fashion-MNIST: (28, 28, 1)). They are checked before they are sent
(:func:`hml_vae.export.check_request_images`) against ``image_shape`` when given, else
only for being such a batch; the served graph checks the shape again.

The REST request is TF Serving's row ("instances") format for a signature with one named
input, here ``images``::

    POST /v1/models/NAME[/versions/N]:predict
    {"signature_name": "serving_default", "instances": [[[[0.0], ...], ...], ...]}

and the answer is ``{"predictions": [...]}``: one value per image for a signature with a
single output, one ``{output: value}`` object per image for several outputs.

Example:
    >>> outputs, seconds = rest_predict("http://localhost:8501", "fashion_vae", images,
    ...                                 image_shape=(28, 28, 1))
    >>> outputs["reconstruction"].shape
    (8, 28, 28, 1)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import numpy as np

from hml_vae.export import check_request_images

# The output of the signatures that have a single one: the REST row format drops its name.
SINGLE_OUTPUTS = {"serving_default": "reconstruction", "decode": "images"}
IMAGE_SIGNATURES = ("serving_default", "encode")


class ServingError(RuntimeError):
    """The server answered with an error, could not be reached, or a client is missing."""


def predict_url(server: str, model: str, version: int | None = None) -> str:
    """``http://host:8501/v1/models/NAME[/versions/N]:predict``."""
    versioned = f"/versions/{version}" if version is not None else ""
    return f"{server.rstrip('/')}/v1/models/{model}{versioned}:predict"


def check_signature(signature_name: str) -> str:
    if signature_name not in IMAGE_SIGNATURES:
        raise ValueError(f"the client sends images, so it calls {' or '.join(IMAGE_SIGNATURES)}"
                         f"; got signature {signature_name!r}.")
    return signature_name


def request_images(images, image_shape=None) -> np.ndarray:
    """``images`` checked for a model of ``image_shape`` (H, W, C), or, when it is None,
    for being a batch (batch, H, W, C) of some image shape.

    Raises:
        ValueError: what is wrong and which conversion is missing.
    """
    if image_shape is None:
        shape = np.shape(images)
        if len(shape) != 4:
            raise ValueError(f"expected a batch of images (batch, H, W, C), got shape {shape}; "
                             f"pass image_shape=(H, W, C) of the served model to be told "
                             f"which conversion is missing.")
        image_shape = shape[1:]
    return check_request_images(images, image_shape)


def rest_request_body(images, signature_name: str = "serving_default",
                      image_shape=None) -> dict:
    """The JSON body of a REST predict request for images (batch, H, W, C) in [0, 1].

    Args:
        images: float pixels in [0, 1].
        signature_name: ``serving_default`` or ``encode``.
        image_shape: the served model's (H, W, C), to check the images against.

    Raises:
        ValueError: images of another shape or dtype (the message says which is expected).
    """
    images = request_images(images, image_shape)
    return {"signature_name": check_signature(signature_name), "instances": images.tolist()}


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


def rest_predict(server: str, model: str, images, signature_name: str = "serving_default",
                 version: int | None = None, timeout: float = 30.0, image_shape=None):
    """Sends images to TF Serving's REST API.

    Args:
        server: ``http://host:port`` (TF Serving's REST port is 8501).
        model: the served model's name.
        images: (batch, H, W, C) float pixels in [0, 1].
        signature_name: ``serving_default`` or ``encode``.
        version: a version to ask for (default: the one the server serves).
        timeout: seconds to wait for the answer.
        image_shape: the served model's (H, W, C), to check the images against before
            sending them (default: the server checks them).

    Returns:
        (outputs by name, seconds the request took including JSON encoding).

    Raises:
        ServingError: the server is unreachable or answered with an error.
    """
    started = time.perf_counter()
    body = json.dumps(rest_request_body(images, signature_name, image_shape)).encode()
    request = urllib.request.Request(predict_url(server, model, version), data=body,
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
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
                 version: int | None = None, image_shape=None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for images (batch, H, W, C)."""
    import tensorflow as tf

    _, predict_pb2, _ = _grpc_modules()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = check_signature(signature_name)
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["images"].CopyFrom(
        tf.make_tensor_proto(request_images(images, image_shape)))
    return request


def grpc_predict(target: str, model: str, images, signature_name: str = "serving_default",
                 version: int | None = None, timeout: float = 30.0, image_shape=None):
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
    request = grpc_request(model, images, signature_name, version, image_shape)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as error:
        raise ServingError(f"gRPC Predict to {target} failed: {error.code().name}: "
                           f"{error.details()}") from None
    outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
    return outputs, time.perf_counter() - started
