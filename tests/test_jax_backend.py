"""hml_vae on the JAX backend (layers, losses, every family's models), and the one-line
errors for a KERAS_BACKEND hml_vae cannot use.

The JAX checks run in one process of their own (tests/backend_checks.py), with TensorFlow
made unimportable there; each of its checks is one test here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from hml_vae import backends, families

JAX_CHECKS = (
    "runs_without_tensorflow",
    *(f"family_{name}" for name in families.names()),
    "sampling_kl_matches_numpy",
    "sampling_reparameterization_matches_numpy",
    "sampling_gradients_match_numpy",
    "reconstruction_loss_matches_numpy",
    "losses_match_numpy",
    "dense_transpose_matches_numpy",
    "kl_sparsity_regularizer_matches_numpy",
    "loads_models_saved_on_tensorflow",
    "scripts_refuse_this_backend_in_one_line",
)


def backend_environment(backend: str) -> dict:
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO),
                   "JAX_PLATFORMS": "cpu",
                   # These checks test results, not speed: XLA's unoptimized code compiles
                   # several times faster, and compiling is most of their cost.
                   "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    return environment


def save_on_tensorflow(directory):
    """Tiny tied and VAE bundles saved by this (TensorFlow) process, with their outputs."""
    from autoencoder_checks import digits_images

    from hml_vae.config import make_config

    images = digits_images(8)
    for name in ("tied", "vae"):
        models = families.build(make_config(name, "tiny", image_shape=(8, 8, 1)))
        (directory / name).mkdir()
        models.save(directory / name)
        np.savez(directory / name / "outputs.npz", images=images,
                 codings=models.coding(images), reconstructions=models.reconstruct(images))
    return directory


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    directory = tmp_path_factory.mktemp("jax")
    saved = save_on_tensorflow(directory)
    results = directory / "results.json"
    process = subprocess.run(
        [sys.executable, str(REPO / "tests" / "backend_checks.py"), str(results), str(saved)],
        env=backend_environment("jax"), capture_output=True, text=True, timeout=600)
    assert process.returncode == 0 and results.exists(), process.stderr[-3000:]
    return json.loads(results.read_text())


def test_the_checks_ran_on_jax_and_are_all_listed_here(jax_results):
    assert jax_results["backend"] == "jax"
    assert set(jax_results["checks"]) == set(JAX_CHECKS)


@pytest.mark.parametrize("name", JAX_CHECKS)
def test_on_jax(jax_results, name):
    outcome = jax_results["checks"][name]
    assert outcome["ok"], outcome["traceback"]


# --- KERAS_BACKEND that hml_vae cannot use: one line ----------------------------------------


def found(name):
    return object()


@pytest.mark.parametrize("environ, expected", [
    ({}, "tensorflow"), ({"KERAS_BACKEND": ""}, "tensorflow"),
    ({"KERAS_BACKEND": "jax"}, "jax"), ({"KERAS_BACKEND": "torch"}, "torch"),
])
def test_supported_backends_pass_the_check(environ, expected):
    # modules={}: as before Keras is first imported.
    assert backends.check_keras_backend(environ, {}, find_spec=found) == expected


@pytest.mark.parametrize("value", ["bogus", "JAX", "numpy", " jax"])
def test_unknown_backend_is_one_line_naming_it_and_the_choices(value):
    with pytest.raises(backends.BackendError) as error:
        backends.check_keras_backend({"KERAS_BACKEND": value}, {}, find_spec=found)
    message = str(error.value)
    assert "\n" not in message
    assert repr(value) in message and "tensorflow, jax, torch" in message


def test_backend_without_its_package_says_what_to_install():
    with pytest.raises(backends.BackendError, match=r"pip install \"jax\[cpu\]\""):
        backends.check_keras_backend({"KERAS_BACKEND": "jax"}, {},
                                     find_spec=lambda name: None)


@pytest.mark.parametrize("command", [
    ["-c", "import hml_vae"],
    [str(REPO / "scripts" / "train.py"), "--model", "vae", "--output", "never"],
])
def test_unknown_backend_stops_imports_and_scripts_with_one_line(command, tmp_path):
    # Cheap processes: the check runs before Keras (or TensorFlow) is imported.
    process = subprocess.run([sys.executable, *command], cwd=tmp_path, capture_output=True,
                             text=True, env=backend_environment("tensorflow_gpu"), timeout=60)
    assert process.returncode != 0
    assert process.stderr.count("\n") == 1, process.stderr
    assert process.stderr.startswith("error: KERAS_BACKEND='tensorflow_gpu' is not a backend")
    assert not (tmp_path / "never").exists()
