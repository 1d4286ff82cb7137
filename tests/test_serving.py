"""Tests of hml_vae.serving and scripts/serving_client.py against hml_vae.export.LocalServer
on 127.0.0.1, which answers TF Serving's REST and gRPC predict requests as TF Serving would:
it runs each request through the exported SavedModel in TensorFlow's C++ session without
checking it first (TF Serving itself cannot be installed here: no pip or Debian package)."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, call_script
from export_helpers import COLOUR_SHAPE, colour_images, sample_images, write_colour_run, write_run
from matplotlib.image import imread

from hml_vae import export, serving
from hml_vae.runs import load_run

FASHION = "fashion_vae"
COLOUR = "colour_vae"


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


@pytest.fixture
def server(sessions):
    """TF Serving's REST and gRPC APIs on 127.0.0.1 for every exported model."""
    with export.LocalServer(sessions) as local:
        yield local


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


def test_rest_predict_against_a_local_server(server, loaded):
    url, received = server.rest_url, server.received
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


def test_the_server_refuses_images_of_another_shape_with_a_clear_message(server):
    # A client that does not know the served model's shape sends Fashion-MNIST images to
    # the colour model: the graph refuses them, naming the input and the shape it takes.
    url = server.rest_url
    with pytest.raises(serving.ServingError, match=re.escape(
            "HTTP 400: assertion failed: [images must be float32 of shape (batch, 20, 24, 3) "
            "in [0, 1]; got shape [2 28 28 1]]")):
        serving.rest_predict(url, COLOUR, sample_images(2))
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 20, 24, 3\)"):
        serving.rest_predict(url, COLOUR, sample_images(2), image_shape=COLOUR_SHAPE)


def test_rest_errors_are_one_clear_message(server):
    url = server.rest_url
    with pytest.raises(serving.ServingError, match="HTTP 400: Servable not found"):
        serving.rest_predict(url, "other_model", sample_images(1))
    with pytest.raises(serving.ServingError, match="cannot reach"):
        serving.rest_predict("http://127.0.0.1:9", FASHION, sample_images(1), timeout=5)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serving_client_script_prints_timings_and_saves_a_png(server, tmp_path, capsys):
    # No --run: Fashion-MNIST test images.
    url, received = server.rest_url, server.received
    output = tmp_path / "reconstructions.png"
    client = load_script("serving_client")
    client.main(["--model", FASHION, "--rest", url, "--count", "3", "--repeat", "2",
                 "--output", str(output)])
    printed = capsys.readouterr().out
    assert ("rest: 3 images of shape (28, 28, 1) as float32 to serving_default, 2 requests: "
            "median") in printed
    assert " ms" in printed
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(received) == 2


def test_serving_client_sends_the_runs_images_and_shows_colour(server, runs, tmp_path,
                                                                 capsys):
    url, received = server.rest_url, server.received
    output = tmp_path / "colour.png"
    client = load_script("serving_client")
    client.main(["--model", COLOUR, "--run", str(runs[COLOUR]), "--rest", url, "--count",
                 "4", "--repeat", "1", "--output", str(output)])
    assert "rest: 4 images of shape (20, 24, 3) as float32" in capsys.readouterr().out
    sent = np.asarray(received[-1]["instances"], np.float32)
    assert sent.shape == (4, 20, 24, 3)
    # The first test images of the run's own .npz, as the run split it.
    expected = export.run_test_images(load_run(runs[COLOUR]).config, 4)
    np.testing.assert_array_equal(sent, expected)
    pixels = imread(output)[..., :3]
    # Colour in colour: the originals' row has pixels whose channels differ (a grayscale
    # colormap gives R = G = B everywhere).
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 0.2


def test_serving_client_with_a_fashion_run_sends_its_test_images(server, runs, tmp_path,
                                                                 capsys):
    url, received = server.rest_url, server.received
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


def test_grpc_predict_against_a_local_server(server, loaded):
    images = colour_images(2)
    outputs, _ = serving.grpc_predict(server.grpc_target, COLOUR, images, version=3,
                                      image_shape=COLOUR_SHAPE)
    with pytest.raises(serving.ServingError, match=r"INVALID_ARGUMENT: .*images must be "
                       r"float32 of shape \(batch, 20, 24, 3\)"):
        serving.grpc_predict(server.grpc_target, COLOUR, sample_images(1))
    request = server.received[0]
    assert (request.model_spec.name, request.model_spec.signature_name,
            request.model_spec.version.value) == (COLOUR, "serving_default", 3)
    sent = tf.make_ndarray(request.inputs["images"])
    assert (sent.dtype, sent.shape) == (np.float32, (2, 20, 24, 3))
    expected = export.run_signature(loaded[COLOUR], "serving_default", {"images": images})
    np.testing.assert_allclose(outputs["reconstruction"], expected["reconstruction"])


# --- Image requests ---------------------------------------------------------------------------


def test_image_requests_over_rest_and_grpc_answer_as_float_requests(server, loaded):
    # Every kind and protocol for the gray model; the colour one (decoded to RGB) takes one
    # path, as each first call of a signature costs a graph optimization in the session.
    for name, images, kinds, protocols in (
            (FASHION, sample_images(3), ("image_bytes", "uint8"), ("rest", "grpc")),
            (COLOUR, colour_images(3), ("image_bytes",), ("rest",))):
        pixels = export.to_pixels(images)
        files = export.encode_png(pixels)
        reference = export.run_signature(loaded[name], "serving_default",
                                         {"images": pixels / np.float32(255)})
        codes = export.run_signature(loaded[name], "encode",
                                     {"images": pixels / np.float32(255)})
        senders = {"rest": (serving.rest_predict, server.rest_url),
                   "grpc": (serving.grpc_predict, server.grpc_target)}
        payloads = {"image_bytes": files, "uint8": pixels}
        for predict, address in (senders[protocol] for protocol in protocols):
            for kind, payload in ((kind, payloads[kind]) for kind in kinds):
                reconstruct, encode = serving.REQUEST_KINDS[kind][0]
                outputs, _ = predict(address, name, payload, reconstruct, kind=kind)
                np.testing.assert_allclose(outputs["reconstruction"],
                                           reference["reconstruction"], atol=1e-5)
                outputs, _ = predict(address, name, payload, encode, kind=kind)
                np.testing.assert_allclose(outputs["z_mean"], codes["z_mean"], atol=1e-5)
    # The REST body holds the files base64-encoded, as TF Serving reads binary strings.
    body = next(request for request in server.received
                if isinstance(request, dict)
                and request["signature_name"] == "reconstruct_image_bytes")
    assert set(body["instances"][0]) == {"image_bytes"}
    assert base64.b64decode(body["instances"][0]["image_bytes"]["b64"])[:4] == b"\x89PNG"


def test_bad_image_requests_get_a_clear_error_and_the_server_keeps_serving(server):
    png = export.encode_png(export.to_pixels(sample_images(1)))[0]
    bad = {
        "empty": ([png, b""], "image_bytes[1] is empty"),
        "not an image": ([b"%PDF-1.7 a document"], "image_bytes[0] is not a PNG or JPEG"),
        "truncated": ([png[:60]], "PNG"),
    }
    for predict, address in ((serving.rest_predict, server.rest_url),
                             (serving.grpc_predict, server.grpc_target)):
        for files, words in bad.values():
            with pytest.raises(serving.ServingError, match=re.escape(words)):
                predict(address, FASHION, files, "reconstruct_image_bytes", kind="image_bytes")
        wrong_size = np.zeros((1, 20, 24, 1), np.uint8)
        with pytest.raises(serving.ServingError, match=re.escape(
                "pixels must be uint8 of shape (batch, 28, 28, 1) (values 0-255); got shape "
                "[1 20 24 1]")):
            predict(address, FASHION, wrong_size, "reconstruct_uint8", kind="uint8")
        outputs, _ = predict(address, FASHION, [png], "reconstruct_image_bytes",
                             kind="image_bytes")
        assert outputs["reconstruction"].shape == (1, 28, 28, 1)


def test_serving_client_sends_image_files_over_rest_and_grpc(server, tmp_path, capsys):
    pixels = export.to_pixels(colour_images(2, image_shape=(40, 30, 3)))
    files = [tmp_path / "first.png", tmp_path / "second.jpg"]
    files[0].write_bytes(tf.io.encode_png(pixels[0]).numpy())
    files[1].write_bytes(tf.io.encode_jpeg(pixels[1]).numpy())
    output = tmp_path / "files.png"
    client = load_script("serving_client")
    client.main(["--model", FASHION, "--image", *map(str, files), "--protocol", "both",
                 "--rest", server.rest_url, "--grpc", server.grpc_target, "--repeat", "1",
                 "--output", str(output)])
    printed = capsys.readouterr().out
    for protocol in ("rest", "grpc"):
        assert (f"{protocol}: 2 images of shape (28, 28, 1) as image_bytes to "
                f"reconstruct_image_bytes") in printed
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sent = tf.make_ndarray(server.received[-1].inputs["image_bytes"])
    assert [bytes(data) for data in sent] == [path.read_bytes() for path in files]
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    result = call_script("serving_client.py", "--model", FASHION, "--image", not_an_image,
                         "--rest", server.rest_url)
    assert result.returncode == 2
    assert result.stderr == f"error: {not_an_image} is not a PNG or JPEG file; convert it " \
                            f"(e.g. to PNG) first.\n"


def test_serving_client_takes_the_data_source_flags(server, runs, tmp_path, capsys):
    # No run: the --npz file's test images (as train.py --npz reads them), sent as uint8.
    url, received = server.rest_url, server.received
    npz = runs[COLOUR].with_suffix(".npz")
    client = load_script("serving_client")
    client.main(["--model", COLOUR, "--npz", str(npz), "--send", "uint8", "--rest", url,
                 "--count", "3", "--repeat", "1", "--signature", "encode"])
    assert "3 images of shape (20, 24, 3) as uint8 to encode_uint8" in capsys.readouterr().out
    sent = np.asarray([row["pixels"] for row in received[-1]["instances"]])
    expected = export.run_test_images(load_run(runs[COLOUR]).config, 3)
    np.testing.assert_array_equal(sent, export.to_pixels(expected))


def test_grpc_without_tensorflow_serving_api_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(serving.ServingError, match="pip install tensorflow-serving-api"):
        serving.grpc_predict("127.0.0.1:1", FASHION, sample_images(1))
