"""A stand-in for TensorFlow Serving on 127.0.0.1: its REST predict API and its gRPC
``PredictionService/Predict``, answering from exported SavedModels loaded in TensorFlow's
C++ session (:class:`~hml_vae.export.session.ServingSession`).

The ``tensorflow_model_server`` binary is not a Python package (it ships as a Docker image
and a Debian package from Google's own repository), so the tests and the latency benchmark
use this instead. It does what matters for the signatures: requests reach the graph
unchecked, converted as TF Serving converts them (JSON numbers to the input's dtype,
``{"b64": ...}`` to bytes), and the graph's errors come back as HTTP 400 / gRPC
INVALID_ARGUMENT with their message. It has no batching, model polling or monitoring.

Example:
    >>> with ServingSession("saved_models/vae/1") as session:
    ...     with LocalServer({"vae": session}) as server:
    ...         rest_predict(server.rest_url, "vae", images)
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict")


def _from_json(value):
    """JSON values with ``{"b64": text}`` objects made bytes, as TF Serving reads them."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"], validate=True)
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _as_input(values, info) -> np.ndarray:
    """``values`` as an array of the dtype of a SignatureDef input ``info``."""
    import tensorflow as tf

    dtype = tf.as_dtype(info.dtype)
    if dtype == tf.string:
        return np.asarray(values, dtype=object)
    array = np.asarray(values)
    if array.dtype == object or (array.size and not np.issubdtype(array.dtype, np.number)
                                 and array.dtype != bool):
        raise ValueError(f"cannot convert the values of an input to {dtype.name}")
    converted = array.astype(dtype.as_numpy_dtype)
    if np.issubdtype(converted.dtype, np.integer) and not np.array_equal(converted, array):
        raise ValueError(f"values out of the range of {dtype.name}")
    return converted


def rest_inputs(request: dict, signature) -> dict[str, np.ndarray]:
    """The named input arrays of a REST predict body, row ("instances") or columnar
    ("inputs") format, for a SignatureDef."""
    if ("instances" in request) == ("inputs" in request):
        raise ValueError("the body must have 'instances' or 'inputs' (one of them)")
    names = sorted(signature.inputs)
    if "inputs" in request:
        given = _from_json(request["inputs"])
        if not isinstance(given, dict):
            given = {names[0]: given} if len(names) == 1 else None
    else:
        rows = _from_json(request["instances"])
        if not isinstance(rows, list) or not rows:
            raise ValueError("'instances' must be a non-empty list")
        if all(isinstance(row, dict) for row in rows):
            keys = {tuple(sorted(row)) for row in rows}
            if len(keys) != 1:
                raise ValueError("every instance must name the same inputs")
            given = {key: [row[key] for row in rows] for key in rows[0]}
        else:
            given = {names[0]: rows} if len(names) == 1 else None
    if given is None or sorted(given) != names:
        raise ValueError(f"the signature takes the inputs {names}, got "
                         f"{sorted(given) if given else 'unnamed values'}")
    return {key: _as_input(value, signature.inputs[key]) for key, value in given.items()}


def rest_answer(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """TF Serving's answer: ``predictions`` (rows) or ``outputs`` (columns)."""
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {key: value.tolist() for key, value in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{key: value[index].tolist() for key, value in outputs.items()}
                            for index in range(count)]}


class LocalServer:
    """REST and gRPC servers on 127.0.0.1 (free ports) for ``{model name: ServingSession}``.

    Attributes:
        rest_url: ``http://127.0.0.1:PORT``.
        grpc_target: ``127.0.0.1:PORT`` (None without tensorflow-serving-api).
        received: every predict request (REST bodies as dicts, gRPC ``PredictRequest``).
    """

    def __init__(self, sessions: dict, grpc: bool = True):
        self.sessions = sessions
        self.received = []
        self.lock = threading.Lock()  # one Session.run at a time per server, as in tests
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._grpc, self.grpc_target = (self._grpc_server() if grpc else (None, None))

    def predict(self, name: str, signature_name: str, inputs: dict) -> dict:
        """Runs a request; KeyError for an unknown model or signature."""
        session = self.sessions[name]
        if signature_name not in session.signatures:
            raise KeyError(f"Serving signature name: \"{signature_name}\" not found in "
                           f"signature def")
        with self.lock:
            return session.run(signature_name, inputs)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                import tensorflow as tf

                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    match = PREDICT_PATH.fullmatch(self.path)
                    if not match or match.group(1) not in server.sessions:
                        raise KeyError(f"Servable not found for request: {self.path}")
                    request = json.loads(body)
                    server.received.append(request)
                    signature_name = request.get("signature_name", "serving_default")
                    session = server.sessions[match.group(1)]
                    if signature_name not in session.signatures:
                        raise KeyError(f"Serving signature name: \"{signature_name}\" not "
                                       f"found in signature def")
                    inputs = rest_inputs(request, session.signatures[signature_name])
                    outputs = server.predict(match.group(1), signature_name, inputs)
                    status, answer = 200, rest_answer(outputs, "instances" in request)
                except tf.errors.InvalidArgumentError as error:  # what the graph refused
                    status, answer = 400, {"error": error.message}
                except (ValueError, KeyError, TypeError) as error:
                    status, answer = 400, {"error": str(error).strip("'\"")}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep the output clean
                pass

        return Handler

    def _grpc_server(self):
        try:
            from concurrent import futures

            import grpc
            from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        except ImportError:
            return None, None
        import tensorflow as tf

        server = self

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):  # noqa: N802 (the gRPC method's name)
                server.received.append(request)
                inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
                try:
                    outputs = server.predict(request.model_spec.name,
                                             request.model_spec.signature_name
                                             or "serving_default", inputs)
                except tf.errors.InvalidArgumentError as error:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
                except KeyError as error:
                    context.abort(grpc.StatusCode.NOT_FOUND, str(error).strip("'\""))
                response = predict_pb2.PredictResponse()
                response.model_spec.CopyFrom(request.model_spec)
                for key, value in outputs.items():
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
                return response

        grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(),
                                                                            grpc_server)
        port = grpc_server.add_insecure_port("127.0.0.1:0")
        return grpc_server, f"127.0.0.1:{port}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        if self._grpc is not None:
            self._grpc.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._http.shutdown()
        self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(None)
