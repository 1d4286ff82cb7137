"""Tests of hml_vae.export, scripts/export.py and scripts/check_savedmodel.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, call_script, run_script
from export_helpers import (
    COLOUR_SHAPE,
    colour_images,
    sample_images,
    write_colour_run,
    write_run,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hml_vae import export
from hml_vae.errors import RunError
from hml_vae.export import exporter, serving_config
from hml_vae.runs import incomplete_dir, load_run

IMAGE_SIGNATURES = {"reconstruct_image_bytes", "encode_image_bytes", "reconstruct_uint8",
                    "encode_uint8"}
VAE_SIGNATURES = {"serving_default", "encode", "decode", "generate"} | IMAGE_SIGNATURES
AUTOENCODER_SIGNATURES = {"serving_default", "encode", "decode"} | IMAGE_SIGNATURES
# The scripts import hml_vae from the checkout they are run in.
SCRIPT_ENV = {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A tiny Fashion-MNIST VAE run, (28, 28, 1), fitted for one epoch on 256 images."""
    return write_run("vae", tmp_path_factory.mktemp("vae") / "run",
                     train_images=sample_images(256))


@pytest.fixture(scope="module")
def vae_export(vae_run, tmp_path_factory):
    """The VAE run exported as ``fashion_vae`` version 1."""
    return export.export_run(vae_run, "fashion_vae", tmp_path_factory.mktemp("saved"))


@pytest.fixture(scope="module")
def vae_loaded(vae_export):
    return tf.saved_model.load(str(vae_export.path))


@pytest.fixture(scope="module")
def vae_session(vae_export):
    """The VAE export in TensorFlow's C++ session, fed unchecked as TF Serving feeds it."""
    with export.ServingSession(vae_export.path) as session:
        yield session


@pytest.fixture(scope="module")
def colour_exports(tmp_path_factory):
    """A tiny conv VAE and stacked autoencoder on synthetic colour (20, 24, 3) images,
    exported: {model: SavedModel path}. The stacked one is fitted for one epoch; the conv
    VAE keeps its initial weights (fitting it costs ~10 s, and the Fashion-MNIST VAE is a
    fitted VAE already)."""
    root = tmp_path_factory.mktemp("colour")
    return {model: export.export_run(write_colour_run(model, root / "runs" / model, train),
                                     model, root / "saved").path
            for model, train in (("conv_vae", False), ("stacked", True))}


@pytest.fixture(scope="module")
def colour_loaded(colour_exports):
    return {model: tf.saved_model.load(str(path)) for model, path in colour_exports.items()}


@pytest.fixture
def stacked_run(tmp_path):
    return write_run("stacked", tmp_path / "stacked")


def input_spec(loaded, signature_name: str, key: str):
    return loaded.signatures[signature_name].structured_input_signature[1][key]


# --- Signatures: names, dtypes, shapes, values ----------------------------------------------


def test_signature_and_tensor_names(vae_loaded, vae_export):
    signatures = vae_loaded.signatures
    assert set(signatures) == VAE_SIGNATURES

    def keys(name):
        function = signatures[name]
        return (sorted(function.structured_input_signature[1]),
                sorted(function.structured_outputs))

    assert keys("serving_default") == (["images"], ["reconstruction"])
    assert keys("encode") == (["images"], ["z_log_var", "z_mean"])
    assert keys("decode") == (["z"], ["images"])
    assert keys("generate") == (["count", "seed"], ["images", "z"])
    images_spec = input_spec(vae_loaded, "serving_default", "images")
    assert (images_spec.dtype, images_spec.shape.as_list()) == (tf.float32, [None, 28, 28, 1])
    generate_inputs = signatures["generate"].structured_input_signature[1]
    assert (generate_inputs["count"].dtype, generate_inputs["seed"].dtype) == (tf.int32,
                                                                               tf.int64)
    listing = export.describe_signatures(vae_export.path)
    assert "name: serving_default_images:0" in listing  # TF Serving's tensor name
    assert "shape: (-1, 28, 28, 1)" in listing


def test_vae_outputs_are_deterministic_probabilities(vae_loaded, vae_run):
    images = export.check_request_images(sample_images(4), (28, 28, 1))
    first = export.run_signature(vae_loaded, "serving_default", {"images": images})
    second = export.run_signature(vae_loaded, "serving_default", {"images": images})
    np.testing.assert_array_equal(first["reconstruction"], second["reconstruction"])
    # Bernoulli decoder: probabilities, not logits.
    assert 0 <= first["reconstruction"].min() and first["reconstruction"].max() <= 1
    assert first["reconstruction"].shape == (4, 28, 28, 1)
    models = load_run(vae_run).load_models()
    np.testing.assert_allclose(first["reconstruction"], models.reconstruct(images),
                               atol=export.ATOL, rtol=export.RTOL)


def test_generate_is_seeded_and_checks_its_count(vae_loaded):
    generate = vae_loaded.signatures["generate"]
    first = generate(count=np.int32(3), seed=np.int64(7))
    again = generate(count=np.int32(3), seed=np.int64(7))
    other = generate(count=np.int32(3), seed=np.int64(8))
    assert first["images"].shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(first["images"], again["images"])
    assert not np.allclose(first["z"], other["z"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="count must be >= 1"):
        generate(count=np.int32(0), seed=np.int64(7))


def test_colour_exports_take_the_runs_image_shape(colour_exports, colour_loaded):
    vae, stacked = colour_loaded["conv_vae"], colour_loaded["stacked"]
    assert set(vae.signatures) == VAE_SIGNATURES
    assert set(stacked.signatures) == AUTOENCODER_SIGNATURES
    for loaded in (vae, stacked):
        for name in ("serving_default", "encode"):
            assert input_spec(loaded, name, "images").shape.as_list() == [None, 20, 24, 3]
        assert export.signature_image_shape(loaded) == COLOUR_SHAPE
    assert input_spec(vae, "decode", "z").shape.as_list() == [None, 4]
    assert input_spec(stacked, "decode", "coding").shape.as_list() == [None, 8]
    images = colour_images(3, seed=5)
    assert vae.signatures["serving_default"](images=images)["reconstruction"].shape == (
        3, 20, 24, 3)
    assert vae.signatures["generate"](count=np.int32(2), seed=np.int64(0))["images"].shape \
        == (2, 20, 24, 3)
    assert stacked.signatures["encode"](images=images)["coding"].shape == (3, 8)
    assert "shape: (-1, 20, 24, 3)" in export.describe_signatures(colour_exports["stacked"])
    metadata = export.read_metadata(colour_exports["conv_vae"])
    assert {key: metadata[key] for key in ("family", "variational", "image_shape",
                                           "likelihood", "latent_dim")} == {
        "family": "conv_vae", "variational": True, "image_shape": [20, 24, 3],
        "likelihood": "gaussian", "latent_dim": 4}
    metadata = export.read_metadata(colour_exports["stacked"])
    assert (metadata["family"], metadata["variational"], metadata["likelihood"],
            metadata["signatures"]) == ("stacked", False, None, sorted(AUTOENCODER_SIGNATURES))


def test_colour_exports_equal_their_keras_models(colour_exports, colour_loaded):
    images = colour_images(5, seed=3)
    for model, path in colour_exports.items():
        models = load_run(export.read_metadata(path)["run_dir"]).load_models()
        results = export.verify_savedmodel(colour_loaded[model], models, images)
        assert set(results) == export.expected_signatures(models)


def test_verify_refuses_an_export_of_another_image_shape(colour_loaded, vae_run):
    with pytest.raises(ValueError, match=r"images of shape \(20, 24, 3\).*\(28, 28, 1\)"):
        export.verify_savedmodel(colour_loaded["conv_vae"], load_run(vae_run).load_models(),
                                 sample_images(2))


# --- Bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["conv_vae", "stacked"])
def test_bad_requests_are_refused_as_tf_serving_feeds_them(model, colour_exports):
    # TF Serving runs the graph on whatever the request holds (no client-side shape
    # check), as ServingSession does: every rule of every input is checked in the graph.
    with export.ServingSession(colour_exports[model]) as session:
        refused = {(request.signature, request.problem): message
                   for request, message in export.check_rejections(session)}
        # The request of a Fashion-MNIST client reaching a colour model: a clear message
        # naming the input and the expected shape, not a crash inside the model.
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            session.run("serving_default", {"images": sample_images(1)})
    assert ("images must be float32 of shape (batch, 20, 24, 3) in [0, 1]; got shape "
            "[1 28 28 1]") in raised.value.message
    signatures = VAE_SIGNATURES if model == "conv_vae" else AUTOENCODER_SIGNATURES
    assert {signature for signature, _ in refused} == signatures
    codings = "z" if model == "conv_vae" else "coding"
    latent = 4 if model == "conv_vae" else 8
    expected = {
        ("serving_default", "images shape (2, 20, 24)"): "got shape [2 20 24]",  # rank 3
        ("serving_default", "images shape (2, 20, 24, 3, 1)"): "got shape [2 20 24 3 1]",
        ("encode", "images shape (2, 21, 24, 3)"): "got shape [2 21 24 3]",  # height
        ("encode", "images shape (2, 20, 25, 3)"): "got shape [2 20 25 3]",  # width
        ("serving_default", "images shape (2, 20, 24, 1)"): "got shape [2 20 24 1]",
        ("encode", "images NaN"): "images must be finite",
        ("serving_default", "images infinity"): "images must be finite",
        ("serving_default", "images 0-255 pixels"): "images must be pixel values in [0, 1]",
        ("serving_default", "images dtype float64"): "_images",
        ("decode", f"{codings} shape (2, {latent + 1})"):
            f"{codings} must be float32 of shape (batch, {latent}); got shape [2 {latent + 1}]",
        ("decode", f"{codings} shape (2, {latent}, 1)"): "must be float32 of shape",
        ("decode", f"{codings} NaN"): f"{codings} must be finite",
        ("decode", f"{codings} dtype float64"): f"_{codings}",
        ("decode", f"{codings} 1e30"): f"{codings} must be codings with |value| <= 10000",
        ("reconstruct_uint8", "pixels shape (2, 20, 24, 1)"):
            "pixels must be uint8 of shape (batch, 20, 24, 3) (values 0-255); got shape "
            "[2 20 24 1]",
        ("encode_uint8", "pixels shape (2, 1440)"): "got shape [2 1440]",
        ("encode_uint8", "pixels dtype float32"): "_pixels",
        ("reconstruct_image_bytes", "image_bytes empty"): "image_bytes[1] is empty",
        ("encode_image_bytes", "image_bytes not an image"):
            "image_bytes[1] is not a PNG or JPEG file",
        ("reconstruct_image_bytes", "image_bytes base64 text"):
            "image_bytes[1] is base64 text",
        ("reconstruct_image_bytes", "image_bytes oversized"):
            f"at most {export.MAX_IMAGE_BYTES} are accepted",
        ("reconstruct_image_bytes", "image_bytes 40000x40000 pixels"):
            "image_bytes[1] is a 40000x40000 image",
        ("reconstruct_image_bytes", "image_bytes truncated PNG"): "PNG",
        ("encode_image_bytes", "image_bytes truncated JPEG"): "JPEG",
        ("reconstruct_image_bytes", "image_bytes shape (1, 2)"):
            "image_bytes must be a string vector (batch,)",
    }
    if model == "conv_vae":
        expected |= {
            ("generate", "count shape (1,)"): "count must be an int32 scalar; got shape [1]",
            ("generate", "seed shape (1,)"): "seed must be an int64 scalar; got shape [1]",
            ("generate", "count 0"): "count must be >= 1",
            ("generate", "count 10001"): "count must be <= 10000",
            ("generate", "count dtype int64"): "_count",
        }
    for key, words in expected.items():
        assert words in refused[key], (key, refused[key])


def test_loaded_signatures_refuse_bad_requests(colour_loaded):
    # Through tf.saved_model.load, Python checks the shape before the graph runs; values
    # reach the graph's checks.
    reconstruct = colour_loaded["conv_vae"].signatures["serving_default"]
    with pytest.raises(TypeError, match=r"shape=\(None, 20, 24, 3\).*name='images'"):
        reconstruct(images=np.zeros((2, 28, 28, 1), np.float32))
    broken = colour_images(2)
    broken[1, 3, 4, 2] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="images must be finite"):
        reconstruct(images=broken)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[0, 1\].*by 255"):
        reconstruct(images=np.full((1, *COLOUR_SHAPE), 255, np.uint8))  # cast, not scaled
    decode = colour_loaded["stacked"].signatures["decode"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="coding must be finite"):
        decode(coding=np.full((1, 8), np.inf, np.float32))


def test_serving_default_takes_a_batch_of_one_and_refuses_each_wrong_input(vae_loaded):
    # Through TF's loader: a (1, 28, 28, 1) batch works (the rank check is evaluated at
    # run time, not folded from the traced spec); wrong shapes and dtypes are refused
    # naming the input, values by the graph naming the input and what it must be.
    signatures = vae_loaded.signatures
    one = signatures["serving_default"](images=np.zeros((1, 28, 28, 1), np.float32))
    assert one["reconstruction"].shape == (1, 28, 28, 1)
    for wrong in ((1, 28, 28), (1, 784), (1, 28, 28, 3), (1, 28, 28, 1, 1)):  # shape, rank
        with pytest.raises((TypeError, ValueError), match=r"images"):
            signatures["serving_default"](images=np.zeros(wrong, np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="float tensor but is a double"):
        signatures["serving_default"](images=tf.zeros((1, 28, 28, 1), tf.float64))
    decode = signatures["decode"]
    for value, words in ((np.nan, "z must be finite; got 4 NaN"),
                         (-np.inf, "z must be finite"),
                         (1e30, r"z must be codings with \|value\| <= 10000; got \|value\| up "
                          r"to 1e\+30")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            decode(z=np.full((1, 4), value, np.float32))
    with pytest.raises((TypeError, ValueError), match=r"z"):
        decode(z=np.zeros((1, 5), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="count must be <= 10000"):
        signatures["generate"](count=np.int32(10_001), seed=np.int64(0))


def test_image_signatures_give_the_float_outputs_for_the_same_pictures(colour_loaded,
                                                                         vae_loaded):
    for loaded, images in ((colour_loaded["conv_vae"], colour_images(3, seed=4)),
                           (colour_loaded["stacked"], colour_images(2, seed=5)),
                           (vae_loaded, sample_images(3))):
        pixels = export.to_pixels(images)
        floats = pixels.astype(np.float32) / 255
        files = export.encode_png(pixels)
        for reconstruct, encode, inputs in (
                ("reconstruct_image_bytes", "encode_image_bytes", {"image_bytes": files}),
                ("reconstruct_uint8", "encode_uint8", {"pixels": pixels})):
            for name, float_name in ((reconstruct, "serving_default"), (encode, "encode")):
                got = export.run_signature(loaded, name, inputs)
                want = export.run_signature(loaded, float_name, {"images": floats})
                assert set(got) == set(want)
                for key in want:
                    np.testing.assert_allclose(got[key], want[key], atol=1e-6)
    # JPEG (lossy): the outputs of the pixels the JPEG decodes to.
    loaded = colour_loaded["conv_vae"]
    pixels = export.to_pixels(colour_images(2, seed=6))
    jpegs = [tf.io.encode_jpeg(image, quality=90).numpy() for image in pixels]
    decoded = np.stack([tf.io.decode_jpeg(data).numpy() for data in jpegs]) / np.float32(255)
    got = export.run_signature(loaded, "reconstruct_image_bytes", {"image_bytes": jpegs})
    want = export.run_signature(loaded, "serving_default", {"images": decoded})
    np.testing.assert_allclose(got["reconstruction"], want["reconstruction"], atol=1e-6)


def test_image_files_of_other_sizes_and_channels_are_converted():
    # The decoding the image_bytes signatures run, on its own.
    images = colour_images(1, seed=2)[0]  # (20, 24, 3), smooth
    pixels = export.to_pixels(images)
    doubled = np.repeat(np.repeat(pixels, 2, axis=0), 2, axis=1)  # (40, 48, 3)
    gray = export.to_pixels(images.mean(axis=-1, keepdims=True))  # (20, 24, 1)
    files = tf.constant([tf.io.encode_png(doubled).numpy(), tf.io.encode_png(gray).numpy()])
    decoded = export.images_from_bytes(files, COLOUR_SHAPE).numpy()
    assert decoded.shape == (2, *COLOUR_SHAPE)
    # Downsized with antialiasing: the smooth picture comes back within a few levels.
    assert np.abs(decoded[0] - pixels / 255).max() < 0.02
    # Gray to RGB: the gray level in every channel.
    np.testing.assert_allclose(decoded[1], np.repeat(gray / 255, 3, axis=-1), atol=1e-6)
    to_gray = export.images_from_bytes(tf.constant([tf.io.encode_png(pixels).numpy()]),
                                       (20, 24, 1)).numpy()[0]
    luminance = (pixels.astype(np.float32) @ [0.2989, 0.587, 0.114]) / 255
    assert np.abs(to_gray[..., 0] - luminance).max() < 2 / 255


def test_python_and_savedmodel_generate_draw_the_same_images(vae_loaded, vae_run):
    from hml_vae.families.bundle import prior_codings

    models = load_run(vae_run).load_models()
    for count, seed in ((3, 0), (2, 7), (1, 2**40 + 3), (2, -5)):
        exported = vae_loaded.signatures["generate"](count=np.int32(count),
                                                     seed=np.int64(seed))
        np.testing.assert_allclose(exported["z"], prior_codings(count, 4, seed), atol=1e-6)
        np.testing.assert_allclose(exported["images"], models.generate(count, seed),
                                   atol=export.ATOL, rtol=export.RTOL)
    assert not np.allclose(models.generate(2, 0), models.generate(2, 1))


# Property tests of the in-graph checks: every request either is valid and answered, or is
# refused with a message naming the input; never a crash, never an answer to a bad one.
# Kept to a few dozen examples each (a session call costs milliseconds).
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=False,
                             suppress_health_check=[HealthCheck.too_slow])
SIZES = st.sampled_from([0, 1, 2, 3, 4, 27, 28, 29, 784])


def refused(session, signature: str, inputs: dict) -> str | None:
    """The error message of a request, or None when it was answered."""
    try:
        session.run(signature, inputs)
    except tf.errors.InvalidArgumentError as error:
        return error.message
    return None


@PROPERTY_SETTINGS
@given(shape=st.one_of(st.lists(SIZES, max_size=5),
                       st.tuples(st.integers(0, 3)).map(lambda batch: [*batch, 28, 28, 1])),
       fill=st.sampled_from([0.0, 0.25, 1.0, -0.5, 1.5, 255.0, np.nan, np.inf]),
       dtype=st.sampled_from([np.float32, np.float32, np.float64, np.uint8]))
def test_property_images_are_answered_only_when_valid(vae_session, shape, fill, dtype):
    assume(np.prod(shape) <= 100_000 and (dtype != np.uint8 or np.isfinite(fill)))
    images = np.full(shape, fill).astype(dtype)
    valid = (dtype == np.float32 and tuple(shape[1:]) == (28, 28, 1) and len(shape) == 4
             and (images.size == 0 or 0 <= fill <= 1))
    message = refused(vae_session, "serving_default", {"images": images})
    assert (message is None) == valid, (shape, fill, dtype, message)
    if message is not None:
        assert "images" in message


@PROPERTY_SETTINGS
@given(codings=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True),
                        min_size=0, max_size=12),
       width=st.sampled_from([4, 4, 3, 12]))
def test_property_codings_are_answered_only_when_valid(vae_session, codings, width):
    values = np.asarray(codings, np.float32)
    if values.size % width:
        values = values[: values.size - values.size % width]
    z = values.reshape(-1, width)
    valid = width == 4 and bool(np.all(np.abs(z) <= export.MAX_CODING_MAGNITUDE))
    message = refused(vae_session, "decode", {"z": z})
    assert (message is None) == valid, (z, message)
    if message is not None:
        assert "z must be" in message


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=64),
       prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"iVBORw0K"]))
def test_property_image_bytes_that_are_not_images_are_refused(vae_session, data, prefix):
    message = refused(vae_session, "reconstruct_image_bytes",
                      {"image_bytes": np.asarray([prefix + data], dtype=object)})
    assert message is not None and message.strip()


def test_check_request_images_says_which_conversion_is_missing():
    check = export.check_request_images
    with pytest.raises(ValueError, match=r"\(batch, 28, 28, 1\).*images\[\.\.\., None\]"):
        check(np.zeros((2, 28, 28), np.float32), (28, 28, 1))
    with pytest.raises(ValueError, match=r"images.reshape\(-1, 28, 28, 1\)"):
        check(np.zeros((2, 784), np.float32), (28, 28, 1))
    with pytest.raises(ValueError, match=r"transpose\(0, 2, 3, 1\)"):
        check(np.zeros((2, 3, 20, 24), np.float32), COLOUR_SHAPE)
    with pytest.raises(ValueError, match=r"\(batch, 20, 24, 3\).*20x24 images with 3 "
                       r"channels"):
        check(np.zeros((2, 28, 28, 1), np.float32), COLOUR_SHAPE)
    with pytest.raises(ValueError, match="uint8.*/ 255"):
        check(np.zeros((2, 28, 28, 1), np.uint8), (28, 28, 1))
    with pytest.raises(ValueError, match="dtype int64"):
        check(np.zeros((2, 28, 28, 1), np.int64), (28, 28, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check(np.full((1, 28, 28, 1), 255.0), (28, 28, 1))
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        check(np.where(np.arange(1440).reshape(1, *COLOUR_SHAPE) == 7, np.nan, 0.5),
              COLOUR_SHAPE)
    assert check(np.zeros((28, 28, 1)), (28, 28, 1)).shape == (1, 28, 28, 1)  # one image
    checked = check(np.zeros((2, *COLOUR_SHAPE), np.float64), COLOUR_SHAPE)
    assert (checked.dtype, checked.shape) == (np.float32, (2, 20, 24, 3))


def test_signature_graphs_check_request_shape_and_range():
    # The checks on their own, traced for requests of any shape.
    check = tf.function(lambda images: export.checked_images(images, COLOUR_SHAPE),
                        input_signature=[tf.TensorSpec(None, tf.float32)])
    for wrong in (tf.zeros((2, 1440)), tf.zeros((2, 20, 24)), tf.zeros((1440,)),
                  tf.zeros((2, 24, 20, 3)), tf.zeros((2, 20, 24, 3, 1))):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"float32 of shape \(batch, 20, 24, 3\) in \[0, 1\]; got "
                           r"shape \["):
            check(wrong)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[0, 1\].*by 255"):
        check(tf.fill((1, *COLOUR_SHAPE), 255.0))
    assert check(tf.zeros((2, *COLOUR_SHAPE))).shape == (2, 20, 24, 3)
    assert check(tf.zeros((0, *COLOUR_SHAPE))).shape == (0, 20, 24, 3)  # an empty batch
    check_codings = tf.function(lambda codings: export.checked_codings(codings, 4),
                                input_signature=[tf.TensorSpec(None, tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"z must be float32 of shape "
                       r"\(batch, 4\); got shape \[2 5\]"):
        check_codings(tf.zeros((2, 5)))
    assert check_codings(tf.zeros((2, 4))).shape == (2, 4)


def test_tfsm_layer_round_trip(vae_export, vae_run):
    images = sample_images(4)
    models = load_run(vae_run).load_models()
    layer = keras.layers.TFSMLayer(str(vae_export.path), call_endpoint="serving_default")
    inputs = keras.Input((28, 28, 1), name="images")
    outputs = layer(inputs)["reconstruction"]
    wrapped = keras.Model(inputs, outputs)
    np.testing.assert_allclose(wrapped.predict(images, verbose=0), models.reconstruct(images),
                               atol=export.ATOL, rtol=export.RTOL)
    encoder = keras.layers.TFSMLayer(str(vae_export.path), call_endpoint="encode")
    np.testing.assert_allclose(encoder(images)["z_mean"], models.encode(images)[0],
                               atol=export.ATOL, rtol=export.RTOL)


@pytest.mark.slow
def test_saved_model_cli_lists_serving_default_with_named_inputs(colour_exports):
    path = colour_exports["conv_vae"]
    cli = Path(sys.executable).parent / "saved_model_cli"
    command = ([str(cli)] if cli.exists()
               else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"])
    result = subprocess.run(
        [*command, "show", "--dir", str(path), "--all"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    shown = result.stdout
    assert "signature_def['serving_default']:" in shown
    assert "inputs['images'] tensor_info:" in shown
    assert "outputs['reconstruction'] tensor_info:" in shown
    assert "shape: (-1, 20, 24, 3)" in shown
    # check_savedmodel.py's listing is the tool's, line for line.
    for line in export.describe_signatures(path).splitlines():
        assert line in shown


# --- Every family, loaded in a fresh process --------------------------------------------------


# --- Versions, atomic writes and bad input ---------------------------------------------------


def test_versions_increment_and_are_never_overwritten_unless_asked(stacked_run, tmp_path):
    base = tmp_path / "saved_models"
    def export_stacked(**options):  # the image signatures only make it slower here
        return export.export_run(stacked_run, "stacked", base, image_signatures=False,
                                 **options)

    assert export_stacked().version == 1
    assert export_stacked().version == 2
    assert export_stacked(version=7).version == 7
    assert export_stacked().version == 8
    first = export.read_metadata(base / "stacked" / "7")
    with pytest.raises(ValueError, match="already exists.*--overwrite"):
        export_stacked(version=7)
    replaced = export_stacked(version=7, overwrite=True)
    assert export.read_metadata(replaced.path)["exported_at"] != first["exported_at"]
    assert export.existing_versions(base / "stacked") == [1, 2, 7, 8]
    assert [child.name for child in (base / "stacked").iterdir()
            if not child.name.isdigit()] == []


class SimulatedCrash(Exception):
    pass


def test_interrupted_export_leaves_no_version_directory(stacked_run, tmp_path, monkeypatch):
    base = tmp_path / "saved_models"
    export.export_run(stacked_run, "stacked", base, image_signatures=False)
    real_build = exporter.build_archive

    def build_failing_archive(models, image_signatures):
        archive = real_build(models, image_signatures=False)

        def write_half_then_fail(directory, **kwargs):
            archive.__class__.write_out(archive, directory, **kwargs)  # a complete write...
            assert (Path(directory) / "saved_model.pb").exists()
            raise SimulatedCrash("disk full")  # ...then a failure before the rename

        archive.write_out = write_half_then_fail
        return archive

    monkeypatch.setattr(exporter, "build_archive", build_failing_archive)
    with pytest.raises(export.ExportError, match="disk full; version 2 was not published"):
        export.export_run(stacked_run, "stacked", base)
    assert sorted(child.name for child in (base / "stacked").iterdir()) == ["1"]
    with pytest.raises(export.ExportError):  # the first version of a new name: no empty dir
        export.export_run(stacked_run, "other", base)
    assert sorted(child.name for child in base.iterdir()) == ["stacked"]


def test_temporaries_of_dead_exports_are_removed(stacked_run, tmp_path):
    model_dir = tmp_path / "saved_models" / "stacked"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = model_dir / f"{export.TEMPORARY_PREFIX}1-{finished.stdout.strip()}"
    alive = model_dir / f"{export.TEMPORARY_PREFIX}1-{os.getppid()}"
    for directory in (dead, alive):
        directory.mkdir(parents=True)
        (directory / "saved_model.pb").write_bytes(b"half")
    export.export_run(stacked_run, "stacked", tmp_path / "saved_models",
                      image_signatures=False)
    assert not dead.exists() and alive.exists()
    assert export.existing_versions(model_dir) == [1]


@pytest.mark.parametrize("name", ["a/b", "../up", "two words", "", ".hidden", "tab\tname"])
def test_bad_names_are_refused(name, stacked_run, tmp_path):
    with pytest.raises(ValueError, match="no path separators or spaces"):
        export.export_run(stacked_run, name, tmp_path / "saved_models")
    assert not (tmp_path / "saved_models").exists()


def test_missing_or_unfinished_runs_are_refused(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        export.export_run(tmp_path / "nowhere", "model", tmp_path / "saved_models")
    run_dir = tmp_path / "interrupted"
    incomplete_dir(run_dir).mkdir()
    with pytest.raises(RunError, match="has not finished"):
        export.export_run(run_dir, "model", tmp_path / "saved_models")
    assert not (tmp_path / "saved_models").exists()


def test_unwritable_base_is_refused(stacked_run, tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        export.export_run(stacked_run, "stacked", not_a_directory)
    with pytest.raises(ValueError, match="cannot create"):
        export.export_run(stacked_run, "stacked", not_a_directory / "below")
    if os.geteuid() != 0:  # root writes anywhere; permissions only bind other users
        read_only = tmp_path / "read_only"
        read_only.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="cannot create|not writable"):
            export.export_run(stacked_run, "stacked", read_only)


@pytest.mark.slow
def test_export_script_errors_and_success(stacked_run, tmp_path):
    base = tmp_path / "saved_models"
    bad_name = call_script("export.py", stacked_run, "--name", "a b", "--base", base)
    assert bad_name.returncode == 2 and "no path separators or spaces" in bad_name.stderr
    missing = call_script("export.py", tmp_path / "nowhere", "--name", "m", "--base", base)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    result = run_script("export.py", stacked_run, "--name", "stacked", "--base", base,
                        "--label", "stable", "--no-image-signatures", env=SCRIPT_ENV)
    assert result.returncode == 0, result.stderr
    assert "version 1" in result.stdout and "(label stable -> 1)" in result.stdout
    assert (base / "stacked" / "1" / "saved_model.pb").exists()
    entry = entries((base / export.MODELS_CONFIG).read_text())["stacked"]
    assert (entry.base_path, dict(entry.version_labels)) == ("/models/stacked", {"stable": 1})
    again = call_script("export.py", stacked_run, "--name", "stacked", "--base", base,
                        "--version", "1")
    assert again.returncode == 2 and "already exists" in again.stderr


# --- TF Serving's model config file ----------------------------------------------------------


HAND_WRITTEN_CONFIG = """\
# Served by the team's TF Serving; edited by hand and by scripts/export.py.
# Keep this header.
model_config_list {
  config {
    name: "kept"  # a model of another project
    base_path: "/models/kept"
    model_platform: "tensorflow"
    model_version_policy { all {} }
  }
  config {
    name: "stacked"
    base_path: "/old/stacked"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
"""


def entries(text: str) -> dict:
    config = export.parse_models_config(text)
    return {entry.name: entry for entry in config.model_config_list.config}


def test_models_config_with_policies_labels_and_comments_round_trips():
    config = export.parse_models_config(HAND_WRITTEN_CONFIG)
    text = export.format_models_config(config, HAND_WRITTEN_CONFIG.splitlines()[:2])
    assert text.startswith("# Served by the team's TF Serving")
    assert export.parse_models_config(text) == config  # every field, as protobuf compares
    original = entries(HAND_WRITTEN_CONFIG)
    # Adding a model and relabelling another keeps what the other entries said.
    updated, notes = export.updated_models_config(config, "stacked", "/models/stacked", 3,
                                                  [1, 2, 3], label="canary")
    updated, _ = export.updated_models_config(updated, "vae", "/models/vae", 1, [1])
    again = entries(export.format_models_config(updated))
    assert again["kept"] == original["kept"]
    assert again["kept"].model_version_policy.WhichOneof("policy_choice") == "all"
    stacked = again["stacked"]
    assert stacked.base_path == "/models/stacked"
    assert dict(stacked.version_labels) == {"stable": 1, "canary": 3}
    assert list(stacked.model_version_policy.specific.versions) == [1, 2, 3]
    assert notes == ["version 3 added to the specific version policy"]
    assert (again["vae"].base_path, again["vae"].model_platform) == ("/models/vae",
                                                                    "tensorflow")
    assert not again["vae"].version_labels


def test_a_label_keeps_every_labelled_version_served():
    # Under the default policy (the latest version only), a stable label on version 1
    # would stop being served once version 2 is exported: the policy becomes specific.
    config = export.parse_models_config(
        'model_config_list { config { name: "vae" base_path: "/models/vae" '
        'version_labels { key: "stable" value: 1 } } }')
    updated, notes = export.updated_models_config(config, "vae", "/models/vae", 2, [1, 2],
                                                  label="canary")
    entry = updated.model_config_list.config[0]
    assert list(entry.model_version_policy.specific.versions) == [1, 2]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    assert "specific [1, 2]" in notes[0]


@pytest.mark.parametrize("text, words", [
    ("model_config_list { config { name: ", "is not a TF Serving model config"),
    ("something else", "is not a TF Serving model config"),
    ('model_config_list { config { name: "a" } config { name: "a" } }', "more than once"),
    ('custom_model_config { }', "custom_model_config"),
])
def test_corrupt_models_configs_are_refused(text, words):
    with pytest.raises(export.ModelsConfigError, match=words):
        export.parse_models_config(text, "saved_models/models.config")


def test_models_config_is_a_valid_model_server_config(tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    export.write_models_config(tmp_path, "vae")
    path = export.write_models_config(tmp_path, "stacked", serving_base="/srv/models/")
    config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    entries = {entry.name: entry for entry in config.model_config_list.config}
    assert entries["vae"].base_path == "/models/vae"
    assert entries["stacked"].base_path == "/srv/models/stacked"
    assert entries["stacked"].model_platform == "tensorflow"


def test_write_atomically_replaces_only_when_complete(tmp_path):
    def writer(text, fail=False):
        def write(directory):
            directory.mkdir()
            (directory / "saved_model.pb").write_text(text)
            if fail:
                raise SimulatedCrash("killed while writing")
        return write

    path = export.write_atomically(tmp_path, 1, writer("first"))
    with pytest.raises(SimulatedCrash):
        export.write_atomically(tmp_path, 1, writer("second", fail=True), overwrite=True)
    assert (path / "saved_model.pb").read_text() == "first"
    with pytest.raises(ValueError, match="appeared during the export"):
        export.write_atomically(tmp_path, 1, writer("third"))
    export.write_atomically(tmp_path, 1, writer("fourth"), overwrite=True)
    assert (path / "saved_model.pb").read_text() == "fourth"
    assert [child.name for child in tmp_path.iterdir()] == ["1"]


# --- Nothing published by a failed export ----------------------------------------------------


def test_a_corrupt_models_config_publishes_nothing(stacked_run, tmp_path):
    base = tmp_path / "saved_models"
    base.mkdir()
    corrupt = b"model_config_list { config { name: "
    (base / export.MODELS_CONFIG).write_bytes(corrupt)
    result = call_script("export.py", stacked_run, "--name", "stacked", "--base", base,
                         "--models-config")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is not a TF Serving model config" in result.stderr
    assert "left as it is" in result.stderr
    assert sorted(child.name for child in base.iterdir()) == [export.MODELS_CONFIG]
    assert (base / export.MODELS_CONFIG).read_bytes() == corrupt


def test_a_label_pointing_at_a_missing_version_publishes_nothing(stacked_run, tmp_path):
    base = tmp_path / "saved_models"
    base.mkdir()
    text = ('model_config_list { config { name: "stacked" base_path: "/models/stacked" '
            'version_labels { key: "stable" value: 5 } } }\n')
    (base / export.MODELS_CONFIG).write_text(text)
    result = call_script("export.py", stacked_run, "--name", "stacked", "--base", base,
                         "--label", "canary")
    assert result.returncode == 2, result.stderr
    assert ("label 'stable' of model 'stacked'" in result.stderr
            and "points at version 5, which is not in" in result.stderr)
    assert (base / export.MODELS_CONFIG).read_text() == text
    assert not (base / "stacked").exists()
    bad_label = call_script("export.py", stacked_run, "--name", "stacked", "--base", base,
                            "--label", "no good")
    assert bad_label.returncode == 2 and "label 'no good' cannot be used" in bad_label.stderr


def test_a_failure_after_publishing_takes_the_version_back(stacked_run, tmp_path,
                                                           monkeypatch):
    base = tmp_path / "saved_models"
    first = export.export_run(stacked_run, "stacked", base, label="stable",
                              image_signatures=False)
    config_text = (base / export.MODELS_CONFIG).read_text()
    exported_at = export.read_metadata(first.path)["exported_at"]

    def fail(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serving_config.StagedConfig, "publish", fail)
    with pytest.raises(export.ExportError, match=r"No space left on device; the new version "
                       r"\S+/stacked/2 was removed"):
        export.export_run(stacked_run, "stacked", base, label="canary",
                          image_signatures=False)
    with pytest.raises(export.ExportError, match=r"/stacked/1 was put back to the version it "
                       r"replaced"):
        export.export_run(stacked_run, "stacked", base, version=1, overwrite=True,
                          models_config=True, image_signatures=False)
    assert export.existing_versions(base / "stacked") == [1]
    assert export.read_metadata(first.path)["exported_at"] == exported_at
    assert (base / export.MODELS_CONFIG).read_text() == config_text
    leftovers = [path.name for path in [*base.iterdir(), *(base / "stacked").iterdir()]
                 if path.name.startswith(".")]
    assert leftovers == []


# --- check_savedmodel.py ------------------------------------------------------------------------


def test_check_savedmodel_fails_on_a_wrong_export_and_a_truncated_file(vae_export, tmp_path):
    # "Wrong": the export compared with another run of the same family and shape (other
    # weights), as when an export is mislabelled.
    other = write_run("vae", tmp_path / "other")
    wrong = call_script("check_savedmodel.py", vae_export.path, "--run", other, "--count", "2")
    assert wrong.returncode == 1, wrong.stdout[-2000:] + wrong.stderr
    assert "exported and Keras outputs differ" in wrong.stderr
    copy = tmp_path / "truncated"
    shutil.copytree(vae_export.path, copy)
    saved_model = copy / "saved_model.pb"
    saved_model.write_bytes(saved_model.read_bytes()[: saved_model.stat().st_size // 3])
    truncated = call_script("check_savedmodel.py", copy)
    assert truncated.returncode == 2
    assert truncated.stderr == (f"error: {saved_model} is not a SavedModel (truncated or "
                                f"corrupt); export the run again.\n")
