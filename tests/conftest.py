"""Shared test helpers: the real data set, a small copy of it, and running the scripts."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hml_vae import data as data_lib

REPO = Path(__file__).resolve().parents[1]
FASHION_DIR = data_lib.DEBIAN_DIRS["fashion_mnist"]


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Writes ``array`` (uint8) as an IDX file; the test's own small data sets."""
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(
        size.to_bytes(4, "big") for size in array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


@pytest.fixture(scope="session")
def fashion_raw():
    """The real Fashion-MNIST arrays, read once for the session."""
    return data_lib.read_idx_directory(FASHION_DIR)


@pytest.fixture
def small_idx_dir(tmp_path, fashion_raw):
    """A directory with a valid, smaller copy of Fashion-MNIST (raw, uncompressed)."""
    sizes = {"train": 5_600, "test": 1_000}
    for key, stem in data_lib.IDX_FILES.items():
        part = key.split("_")[0]
        write_idx(tmp_path / stem, fashion_raw[key][: sizes[part]], compress=False)
    return tmp_path


def load_script(name: str):
    """``scripts/<name>`` as a module, to call its functions in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{Path(name).stem}",
                                                  REPO / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """Runs ``scripts/<name>``'s command (``console()``: argument parsing, the one-line
    error boundary, the exit code) in this process, for error paths: a fresh process
    costs a TensorFlow import per case. Same result type as :func:`run_script`."""
    import contextlib
    import io

    module = load_script(name)
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv = sys.argv
    sys.argv = [name, *map(str, args)]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = module.console()
            except SystemExit as exit_:  # argparse's errors and --help
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved_argv
    return subprocess.CompletedProcess([name, *args], code, stdout.getvalue(),
                                       stderr.getvalue())


def run_script(name: str, *args: str, env: dict | None = None, timeout: float = 300):
    """Runs ``scripts/<name>`` in a fresh Python process, as a user would (the package from
    this checkout, installed or not)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)],
        capture_output=True, text=True, env=environment, timeout=timeout, cwd=REPO,
    )
