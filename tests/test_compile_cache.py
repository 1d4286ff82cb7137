"""The persistent XLA compilation cache: where it lives, when it is off, and that a second
process loads the step the first one compiled instead of compiling it again."""

import os
import subprocess
import sys

from hml_vae import compile_cache
from tests.conftest import REPO

# One compiled Keras training step, as hml_vae's training runs it (jit_compile=True).
FIT_ONE_STEP = """
import numpy as np
import hml_vae, keras
inputs = keras.Input((6,))
model = keras.Model(inputs, keras.layers.Dense(6, activation="sigmoid")(inputs))
model.compile("sgd", "mse", jit_compile=True)
x = np.linspace(0, 1, 48, dtype="float32").reshape(8, 6)
model.fit(x, x, epochs=1, batch_size=8, verbose=0)
"""


def run_one_step(cache_dir):
    environment = {**os.environ, "PYTHONPATH": str(REPO),
                   compile_cache.ENVIRONMENT_VARIABLE: str(cache_dir)}
    environment.pop("TF_XLA_FLAGS", None)
    result = subprocess.run([sys.executable, "-c", FIT_ONE_STEP], capture_output=True,
                            text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    return {path.name: path.stat().st_mtime_ns for path in cache_dir.iterdir()}


def test_a_second_process_loads_the_compiled_step_instead_of_compiling_it(tmp_path):
    first = run_one_step(tmp_path)
    assert first and all(name.startswith("xla_compile_cache") for name in first)
    # An executable compiled again would be written again (new file or new mtime).
    assert run_one_step(tmp_path) == first


def test_the_directory_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(compile_cache.ENVIRONMENT_VARIABLE, str(tmp_path / "xla"))
    assert compile_cache.requested_directory() == tmp_path / "xla"
    monkeypatch.setenv(compile_cache.ENVIRONMENT_VARIABLE, "off")
    assert compile_cache.requested_directory() is None
    monkeypatch.delenv(compile_cache.ENVIRONMENT_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert compile_cache.requested_directory() == tmp_path / "cache" / "hml_vae" / "xla"


def test_an_unusable_directory_turns_the_cache_off(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(compile_cache.ENVIRONMENT_VARIABLE, str(blocker / "xla"))
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")
    assert compile_cache.enable() is None
    assert os.environ["TF_XLA_FLAGS"] == "--tf_xla_auto_jit=0"


def test_a_cache_directory_the_user_set_in_tf_xla_flags_wins(monkeypatch, tmp_path):
    users = f"{compile_cache.FLAG}={tmp_path / 'mine'}"
    monkeypatch.setenv("TF_XLA_FLAGS", users)
    monkeypatch.setenv(compile_cache.ENVIRONMENT_VARIABLE, str(tmp_path / "ours"))
    assert compile_cache.enable() is None
    assert os.environ["TF_XLA_FLAGS"] == users


def test_flags_the_user_set_are_kept_beside_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")
    monkeypatch.setenv(compile_cache.ENVIRONMENT_VARIABLE, str(tmp_path / "xla"))
    assert compile_cache.enable() == tmp_path / "xla"
    cache_flag = f"{compile_cache.FLAG}={tmp_path / 'xla'}"
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {cache_flag}"
    assert (tmp_path / "xla").is_dir()
