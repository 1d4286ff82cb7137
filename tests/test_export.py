"""Tests of hml_vae.export, scripts/export.py and scripts/check_savedmodel.py."""

from __future__ import annotations

import os
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

from hml_vae import export
from hml_vae.errors import RunError
from hml_vae.runs import incomplete_dir, load_run

VAE_SIGNATURES = {"serving_default", "encode", "decode", "generate"}
AUTOENCODER_SIGNATURES = {"serving_default", "encode", "decode"}
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
    assert export.export_run(stacked_run, "stacked", base).version == 1
    assert export.export_run(stacked_run, "stacked", base).version == 2
    assert export.export_run(stacked_run, "stacked", base, version=7).version == 7
    assert export.export_run(stacked_run, "stacked", base).version == 8
    first = export.read_metadata(base / "stacked" / "7")
    with pytest.raises(ValueError, match="already exists.*--overwrite"):
        export.export_run(stacked_run, "stacked", base, version=7)
    replaced = export.export_run(stacked_run, "stacked", base, version=7, overwrite=True)
    assert export.read_metadata(replaced.path)["exported_at"] != first["exported_at"]
    assert export.existing_versions(base / "stacked") == [1, 2, 7, 8]
    assert [child.name for child in (base / "stacked").iterdir()
            if not child.name.isdigit()] == []


class SimulatedCrash(Exception):
    pass


def test_interrupted_export_leaves_no_version_directory(stacked_run, tmp_path, monkeypatch):
    base = tmp_path / "saved_models"
    export.export_run(stacked_run, "stacked", base)
    real_build = export.build_archive

    def build_failing_archive(models):
        archive = real_build(models)

        def write_half_then_fail(directory, **kwargs):
            archive.__class__.write_out(archive, directory, **kwargs)  # a complete write...
            assert (Path(directory) / "saved_model.pb").exists()
            raise SimulatedCrash("disk full")  # ...then a failure before the rename

        archive.write_out = write_half_then_fail
        return archive

    monkeypatch.setattr(export, "build_archive", build_failing_archive)
    with pytest.raises(SimulatedCrash):
        export.export_run(stacked_run, "stacked", base)
    assert sorted(child.name for child in (base / "stacked").iterdir()) == ["1"]
    with pytest.raises(SimulatedCrash):  # the first version of a new name: no empty dir
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
    export.export_run(stacked_run, "stacked", tmp_path / "saved_models")
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
                        "--models-config", env=SCRIPT_ENV)
    assert result.returncode == 0, result.stderr
    assert "version 1" in result.stdout
    assert (base / "stacked" / "1" / "saved_model.pb").exists()
    assert 'base_path: "/models/stacked"' in (base / export.MODELS_CONFIG).read_text()
    again = call_script("export.py", stacked_run, "--name", "stacked", "--base", base,
                        "--version", "1")
    assert again.returncode == 2 and "already exists" in again.stderr


# --- TF Serving's model config file ----------------------------------------------------------


def test_models_config_adds_and_replaces_entries(tmp_path):
    text = export.update_models_config("", "vae", "/models/vae")
    text = export.update_models_config(text, "stacked", "/models/stacked")
    text = export.update_models_config(text, "vae", "/srv/models/vae")
    assert text.count("config {") == 2
    assert '"/srv/models/vae"' in text and '"/models/vae"' not in text
    assert text.index('"stacked"') < text.index('"vae"')  # the updated entry moves last
    hand_written = ('model_config_list {\n  config {\n    name: "kept"\n    base_path: "/k"\n'
                    '    model_platform: "tensorflow"\n    model_version_policy { all {} }\n'
                    '  }\n}\n')
    updated = export.update_models_config(hand_written, "vae", "/models/vae")
    assert "model_version_policy { all {} }" in updated
    with pytest.raises(ValueError, match="not a model_config_list"):
        export.update_models_config("model_config_list { config { name: ", "vae", "/m")
    with pytest.raises(ValueError, match="not a model_config_list"):
        export.update_models_config("something else", "vae", "/m")


def test_models_config_is_a_valid_model_server_config(tmp_path):
    model_server_config_pb2 = pytest.importorskip(
        "tensorflow_serving.config.model_server_config_pb2")
    from google.protobuf import text_format

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
