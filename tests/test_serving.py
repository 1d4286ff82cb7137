"""Tests of hml_vae.serving and scripts/serving_client.py against small local servers on
127.0.0.1 that answer as TF Serving would: they run each request through the exported
SavedModel in TensorFlow's C++ session without checking it first (TF Serving itself cannot
be installed here)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO
from export_helpers import COLOUR_SHAPE, colour_images, sample_images, write_colour_run, write_run
from matplotlib.image import imread

from hml_vae import export, serving

FASHION = "fashion_vae"
COLOUR = "colour_vae"
PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Untrained VAEs: {served name: run directory}, one for Fashion-MNIST (28, 28, 1) and a
    conv VAE for colour (20, 24, 3) images."""
    root = tmp_path_factory.mktemp("serving")
    return {FASHION: write_run("vae", root / "runs" / "vae"),
            COLOUR: write_colour_run("conv_vae", root / "runs" / "conv_vae", train=False)}


@pytest.fixture(scope="module")
def sessions(runs, tmp_path_factory):
    """Each run exported and loaded as TF Serving loads it: {served name: ServingSession}."""
    base = tmp_path_factory.mktemp("saved")
    opened = {name: export.ServingSession(export.export_run(run, name, base).path)
              for name, run in runs.items()}
    yield opened
    for session in opened.values():
        session.close()


@pytest.fixture(scope="module")
def loaded(sessions):
    """The same SavedModels through tf.saved_model.load: the reference outputs."""
    return {name: tf.saved_model.load(str(session.path)) for name, session in sessions.items()}


def check_rest_request(path: str, headers, body: bytes, served) -> tuple[str, dict]:
    """What a TF Serving REST predict endpoint requires of a request; returns the model
    name and the parsed body, or raises ValueError saying what is wrong. The images are
    not checked here: the graph checks them, as it must under TF Serving."""
    match = PREDICT_PATH.fullmatch(path)
    if not match or match.group(1) not in served:
        raise ValueError(f"unexpected path {path}")
    if headers.get("Content-Type") != "application/json":
        raise ValueError(f"Content-Type {headers.get('Content-Type')}")
    request = json.loads(body)
    if set(request) != {"signature_name", "instances"}:
        raise ValueError(f"keys {sorted(request)}")
    return match.group(1), request


def rest_answer(session, signature_name: str, instances) -> dict:
    """TF Serving's row-format answer: the instances become a tensor of the signature's
    dtype, whatever their shape, and go through the graph."""
    outputs = session.run(signature_name, {"images": np.asarray(instances, np.float32)})
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{key: value[index].tolist() for key, value in outputs.items()}
                            for index in range(count)]}


@pytest.fixture
def rest_server(sessions):
    """A local HTTP server speaking TF Serving's REST predict API for every exported model;
    yields (url, requests received)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                name, request = check_rest_request(self.path, self.headers, body, sessions)
                received.append(request)
                status, answer = 200, rest_answer(sessions[name], request["signature_name"],
                                                  request["instances"])
            except (ValueError, KeyError) as error:
                status, answer = 400, {"error": str(error)}
            except tf.errors.InvalidArgumentError as error:  # what the graph refused
                status, answer = 400, {"error": error.message}
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
    images = colour_images(3)
    body = json.loads(json.dumps(serving.rest_request_body(images, image_shape=COLOUR_SHAPE)))
    assert set(body) == {"signature_name", "instances"}
    assert body["signature_name"] == "serving_default"
    instances = np.asarray(body["instances"], np.float32)
    assert instances.shape == (3, 20, 24, 3)
    np.testing.assert_array_equal(instances, images)
    assert serving.predict_url("http://h:8501/", "m", 3) == "http://h:8501/v1/models/m/versions/3:predict"
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 20, 24, 3\)"):
        serving.rest_request_body(images.reshape(3, -1), image_shape=COLOUR_SHAPE)
    with pytest.raises(ValueError, match=r"images\[\.\.\., None\]"):
        serving.rest_request_body(sample_images(2)[..., 0], image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match=r"a batch of images \(batch, H, W, C\).*image_shape"):
        serving.rest_request_body(sample_images(2)[..., 0])  # shape unknown: rank 4 needed
    with pytest.raises(ValueError, match="serving_default or encode"):
        serving.rest_request_body(images, "generate")


def test_rest_predict_against_a_local_server(rest_server, loaded):
    url, received = rest_server
    for name, images in ((FASHION, sample_images(4)), (COLOUR, colour_images(4))):
        outputs, seconds = serving.rest_predict(url, name, images,
                                                image_shape=images.shape[1:])
        assert seconds > 0
        expected = export.run_signature(loaded[name], "serving_default", {"images": images})
        assert outputs["reconstruction"].shape == images.shape
        np.testing.assert_allclose(outputs["reconstruction"], expected["reconstruction"],
                                   atol=1e-6)
        codes, _ = serving.rest_predict(url, name, images, "encode")
        assert set(codes) == {"z_mean", "z_log_var"} and codes["z_mean"].shape == (4, 4)
    assert len(received) == 4


def test_the_server_refuses_images_of_another_shape_with_a_clear_message(rest_server):
    # A client that does not know the served model's shape sends Fashion-MNIST images to
    # the colour model: the graph refuses them, naming the input and the shape it takes.
    url, _ = rest_server
    with pytest.raises(serving.ServingError, match=re.escape(
            "HTTP 400: assertion failed: [images must be float32 of shape (batch, 20, 24, 3) "
            "in [0, 1]; got shape [2 28 28 1]]")):
        serving.rest_predict(url, COLOUR, sample_images(2))
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 20, 24, 3\)"):
        serving.rest_predict(url, COLOUR, sample_images(2), image_shape=COLOUR_SHAPE)


def test_rest_errors_are_one_clear_message(rest_server):
    url, _ = rest_server
    with pytest.raises(serving.ServingError, match="HTTP 400: unexpected path"):
        serving.rest_predict(url, "other_model", sample_images(1))
    with pytest.raises(serving.ServingError, match="cannot reach"):
        serving.rest_predict("http://127.0.0.1:9", FASHION, sample_images(1), timeout=5)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serving_client_script_prints_timings_and_saves_a_png(rest_server, tmp_path, capsys):
    # No --run: Fashion-MNIST test images.
    url, received = rest_server
    output = tmp_path / "reconstructions.png"
    client = load_script("serving_client")
    client.main(["--model", FASHION, "--rest", url, "--count", "3", "--repeat", "2",
                 "--output", str(output)])
    printed = capsys.readouterr().out
    assert "rest: 3 images of shape (28, 28, 1), 2 requests: median" in printed
    assert " ms" in printed
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(received) == 2


def test_serving_client_sends_the_runs_images_and_shows_colour(rest_server, runs, tmp_path,
                                                                 capsys, monkeypatch):
    url, received = rest_server
    output = tmp_path / "colour.png"
    # hml_vae.data cannot read the colour run's .npz yet; its images stand in for what
    # load_for_config(run.config) will return.
    monkeypatch.setattr(export, "run_test_images",
                        lambda config, count, data_dir=None: colour_images(count))
    client = load_script("serving_client")
    client.main(["--model", COLOUR, "--run", str(runs[COLOUR]), "--rest", url, "--count",
                 "4", "--repeat", "1", "--output", str(output)])
    assert "rest: 4 images of shape (20, 24, 3), 1 requests" in capsys.readouterr().out
    assert np.asarray(received[-1]["instances"]).shape == (4, 20, 24, 3)
    pixels = imread(output)[..., :3]
    # Colour in colour: the originals' row has pixels whose channels differ (a grayscale
    # colormap gives R = G = B everywhere).
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 0.2


def test_serving_client_with_a_fashion_run_sends_its_test_images(rest_server, runs, tmp_path,
                                                                 capsys):
    url, received = rest_server
    client = load_script("serving_client")
    client.main(["--model", FASHION, "--run", str(runs[FASHION]), "--rest", url, "--count",
                 "2", "--repeat", "1", "--signature", "encode", "--output",
                 str(tmp_path / "unused.png")])
    assert "z_mean (2, 4)" in capsys.readouterr().out
    sent = np.asarray(received[-1]["instances"])
    assert sent.shape == (2, 28, 28, 1)
    # The run's Bernoulli VAE saw binarized test images; so does its server.
    assert set(np.unique(sent)) <= {0.0, 1.0}
    assert not (tmp_path / "unused.png").exists()  # encode: no reconstructions to show


def test_grpc_predict_against_a_local_server(sessions, loaded):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    requests = []

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (the gRPC method's name)
            requests.append(request)
            inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
            try:
                outputs = sessions[request.model_spec.name].run(
                    request.model_spec.signature_name, inputs)
            except tf.errors.InvalidArgumentError as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
            response = predict_pb2.PredictResponse()
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    images = colour_images(2)
    try:
        outputs, _ = serving.grpc_predict(f"127.0.0.1:{port}", COLOUR, images, version=3,
                                          image_shape=COLOUR_SHAPE)
        with pytest.raises(serving.ServingError, match=r"INVALID_ARGUMENT: .*images must be "
                           r"float32 of shape \(batch, 20, 24, 3\)"):
            serving.grpc_predict(f"127.0.0.1:{port}", COLOUR, sample_images(1))
    finally:
        server.stop(None)
    request = requests[0]
    assert (request.model_spec.name, request.model_spec.signature_name,
            request.model_spec.version.value) == (COLOUR, "serving_default", 3)
    sent = tf.make_ndarray(request.inputs["images"])
    assert (sent.dtype, sent.shape) == (np.float32, (2, 20, 24, 3))
    expected = export.run_signature(loaded[COLOUR], "serving_default", {"images": images})
    np.testing.assert_allclose(outputs["reconstruction"], expected["reconstruction"])


def test_grpc_without_tensorflow_serving_api_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(serving.ServingError, match="pip install tensorflow-serving-api"):
        serving.grpc_predict("127.0.0.1:1", FASHION, sample_images(1))
