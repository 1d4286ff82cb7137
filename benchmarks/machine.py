"""Where and on what code a benchmark's numbers were measured: one stamp shared by every
benchmark (commit, dirty tree, date, machine, load average before and after the work)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAMP_KEYS = ("commit", "dirty", "date", "cpu", "cpu_count", "load_average_before",
              "load_average_after")


def child_environment() -> dict:
    """The environment for a benchmark's child process: this checkout's hml_vae first on
    the path (a script's own folder is what Python puts there, and an installed hml_vae
    may be another checkout's), and no XLA cache directory in ``TF_XLA_FLAGS``: this
    process's hml_vae import put its own there, which the child's would keep, ignoring
    the ``HML_VAE_COMPILE_CACHE`` the child is given."""
    path = os.environ.get("PYTHONPATH")
    environment = {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}
    flags = [flag for flag in environment.pop("TF_XLA_FLAGS", "").split()
             if not flag.startswith("--tf_xla_persistent_cache_directory")]
    return {**environment, "TF_XLA_FLAGS": " ".join(flags)} if flags else environment


def run_child(script, arguments: list[str], **environment: str) -> dict:
    """``python SCRIPT ARGUMENTS`` in a process of its own, with ``environment`` added to
    :func:`child_environment`; returns the JSON object its stdout ends with. A failed
    child raises RuntimeError with the end of its stderr."""
    import json
    import subprocess
    import sys

    command = [sys.executable, str(script), *arguments]
    finished_process = subprocess.run(command, env={**child_environment(), **environment},
                                      capture_output=True, text=True, check=False)
    if finished_process.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed (exit "
                           f"{finished_process.returncode}): "
                           f"{finished_process.stderr.strip()[-2000:]}")
    return json.loads(finished_process.stdout.strip().splitlines()[-1])


def epoch_timer():
    """A Keras callback that appends each epoch's wall and CPU seconds to its ``wall``
    and ``cpu`` lists."""
    import time

    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall, self.cpu = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.wall.append(time.perf_counter() - self.started[0])
            self.cpu.append(time.process_time() - self.started[1])

    return EpochTimer()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def git_state() -> tuple[str, bool]:
    """(short commit, whether tracked files other than the results differ from it) of
    the checkout measured; ("unknown", True) outside a git checkout. Results files are
    left out: ``run_all.py`` writes one benchmark's before the next one starts."""
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short=7", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                         ":(exclude)benchmarks/results"))
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return commit, dirty


def describe_machine() -> dict:
    """The stamp at the start of a benchmark: commit, dirty tree, date, CPU, cores, GPUs,
    library versions and the load average before any of the benchmark's work (how shared
    the machine was). Call ``finished`` on it when the work is done."""
    import keras
    import tensorflow as tf

    commit, dirty = git_state()
    return {
        "commit": commit,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_average_before": [round(value, 2) for value in os.getloadavg()],
    }


def finished(machine: dict) -> dict:
    """The stamp with the load average read now, after the benchmark's work."""
    return {**machine, "load_average_after": [round(value, 2) for value in os.getloadavg()]}


def stamp_line(machine: dict) -> str:
    """One Markdown line with the stamp, for every report."""
    load = ", ".join(f"{value:.2f}" for value in machine["load_average_before"])
    after = ", ".join(f"{value:.2f}" for value in machine["load_average_after"])
    dirty = " (with uncommitted changes)" if machine["dirty"] else ""
    return (f"Commit {machine['commit']}{dirty}, {machine['date']}, {machine['cpu']} "
            f"({machine['cpu_count']} cores, {machine['gpus']} GPUs), TensorFlow "
            f"{machine['tensorflow']}, Keras {machine['keras']}; load average (1, 5, 15 min) "
            f"{load} before, {after} after (a load above the benchmark's own ~2 means other "
            f"work shared the cores).")


def write_results(directory, stem: str, report: dict, to_markdown) -> None:
    """Writes ``STEM.json`` (the report) and ``STEM.md`` (its Markdown, made from the
    report alone) into ``directory``, and prints the Markdown."""
    import json
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = to_markdown(report)
    (directory / f"{stem}.md").write_text(markdown)
    print(markdown)
