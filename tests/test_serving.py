"""Tests of hml_vae.serving and scripts/serving_client.py against small local servers on
127.0.0.1 that check each request and answer with the exported SavedModel's outputs, as
TF Serving would (TF Serving itself cannot be installed here)."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO
from export_helpers import sample_images, write_untrained_run

from hml_vae import export, serving

MODEL = "fashion_vae"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """An (untrained) VAE exported and loaded with tf.saved_model.load."""
    root = tmp_path_factory.mktemp("serving")
    result = export.export_run(write_untrained_run("vae", root / "run"), MODEL, root / "saved")
    return tf.saved_model.load(str(result.path))


def check_rest_request(path: str, headers, body: bytes) -> tuple[str, dict]:
    """What a TF Serving REST predict endpoint requires of a request; returns the
    signature name and the parsed body, or raises ValueError saying what is wrong."""
    if path != f"/v1/models/{MODEL}:predict":
        raise ValueError(f"unexpected path {path}")
    if headers.get("Content-Type") != "application/json":
        raise ValueError(f"Content-Type {headers.get('Content-Type')}")
    request = json.loads(body)
    if set(request) != {"signature_name", "instances"}:
        raise ValueError(f"keys {sorted(request)}")
    instances = np.asarray(request["instances"])
    if instances.ndim != 3 or instances.shape[1:] != (28, 28) or instances.dtype != float:
        raise ValueError(f"instances of shape {instances.shape} and dtype {instances.dtype}")
    return request["signature_name"], request


def rest_answer(loaded_model, signature_name: str, instances) -> dict:
    """TF Serving's row-format answer for one request."""
    outputs = export.run_signature(loaded_model, signature_name,
                                   {"images": np.asarray(instances, np.float32)})
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{key: value[index].tolist() for key, value in outputs.items()}
                            for index in range(count)]}


@pytest.fixture
def rest_server(loaded):
    """A local HTTP server speaking TF Serving's REST predict API; yields (url, requests)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                signature_name, request = check_rest_request(self.path, self.headers, body)
                received.append(request)
                status, answer = 200, rest_answer(loaded, signature_name, request["instances"])
            except (ValueError, KeyError) as error:
                status, answer = 400, {"error": str(error)}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_rest_body_is_json_of_the_documented_form():
    images = sample_images(3)
    body = json.loads(json.dumps(serving.rest_request_body(images)))
    assert set(body) == {"signature_name", "instances"}
    assert body["signature_name"] == "serving_default"
    np.testing.assert_array_equal(np.asarray(body["instances"], np.float32), images)
    assert serving.predict_url("http://h:8501/", "m", 3) == "http://h:8501/v1/models/m/versions/3:predict"
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 28, 28\)"):
        serving.rest_request_body(images.reshape(3, 784))
    with pytest.raises(ValueError, match="serving_default or encode"):
        serving.rest_request_body(images, "generate")


def test_rest_predict_against_a_local_server(rest_server, loaded):
    url, received = rest_server
    images = sample_images(4)
    outputs, seconds = serving.rest_predict(url, MODEL, images)
    assert seconds > 0 and len(received) == 1
    expected = export.run_signature(loaded, "serving_default", {"images": images})
    np.testing.assert_allclose(outputs["reconstruction"], expected["reconstruction"],
                               atol=1e-6)
    codes, _ = serving.rest_predict(url, MODEL, images, "encode")
    assert set(codes) == {"z_mean", "z_log_var"} and codes["z_mean"].shape == (4, 4)


def test_rest_errors_are_one_clear_message(rest_server):
    url, _ = rest_server
    with pytest.raises(serving.ServingError, match="HTTP 400: unexpected path"):
        serving.rest_predict(url, "other_model", sample_images(1))
    with pytest.raises(serving.ServingError, match="cannot reach"):
        serving.rest_predict("http://127.0.0.1:9", MODEL, sample_images(1), timeout=5)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serving_client_script_prints_timings_and_saves_a_png(rest_server, tmp_path, capsys):
    url, received = rest_server
    output = tmp_path / "reconstructions.png"
    client = load_script("serving_client")
    client.main(["--model", MODEL, "--rest", url, "--count", "3", "--repeat", "2",
                 "--output", str(output)])
    printed = capsys.readouterr().out
    assert "rest: 3 images, 2 requests: median" in printed and " ms" in printed
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(received) == 2


def test_grpc_predict_against_a_local_server(loaded):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    requests = []

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (the gRPC method's name)
            requests.append(request)
            inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
            outputs = export.run_signature(loaded, request.model_spec.signature_name, inputs)
            response = predict_pb2.PredictResponse()
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        images = sample_images(2)
        outputs, _ = serving.grpc_predict(f"127.0.0.1:{port}", MODEL, images, version=3)
    finally:
        server.stop(None)
    (request,) = requests
    assert (request.model_spec.name, request.model_spec.signature_name,
            request.model_spec.version.value) == (MODEL, "serving_default", 3)
    assert tf.make_ndarray(request.inputs["images"]).dtype == np.float32
    expected = export.run_signature(loaded, "serving_default", {"images": images})
    np.testing.assert_allclose(outputs["reconstruction"], expected["reconstruction"])


def test_grpc_without_tensorflow_serving_api_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(serving.ServingError, match="pip install tensorflow-serving-api"):
        serving.grpc_predict("127.0.0.1:1", MODEL, sample_images(1))
