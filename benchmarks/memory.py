"""Peak resident memory of a default VAE training run (scripts/train.py as users run it).

    .venv/bin/python benchmarks/memory.py                       # the default run, whole
    .venv/bin/python benchmarks/memory.py --epochs 1 --limit 300 --results-dir /tmp/m  # smoke

Runs the training script in a child process and reads that child's peak resident set size
(``os.wait4``'s resource usage of the child alone, forked from a small launcher process).
Without --epochs and --limit the run is the default one (the preset's epochs, every
training image); the report says which epochs and images were measured, and a reduced run
gets them in its file name. Writes STEM.json and STEM.md to --results-dir (default
benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import (  # noqa: E402
    child_environment,
    describe_machine,
    finished,
    stamp_line,
    write_results,
)
from hml_vae import cli  # noqa: E402

# Runs argv[1:] in a process forked from this small one and prints its peak RSS (KiB) and
# exit code. A child forked straight from the benchmark's process would count that
# process's resident pages in its own peak (Linux's ru_maxrss includes what it held
# between fork and exec): under run_all.py, gigabytes of earlier benchmarks' memory.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def measure(command: list[str]) -> tuple[int, float, str]:
    """(peak RSS in bytes, wall seconds, stderr tail) of ``command`` run to its end."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        launched = subprocess.run([sys.executable, "-c", LAUNCHER, *command],
                                  stdout=subprocess.PIPE, stderr=errors, text=True,
                                  env=child_environment(), check=False)
        seconds = time.perf_counter() - started
        errors.seek(0)
        tail = errors.read().decode(errors="replace")[-3000:]
    if launched.returncode != 0 or len(launched.stdout.split()) != 2:
        raise RuntimeError(f"{' '.join(command)} could not be launched:\n{tail}")
    peak_kib, code = (int(value) for value in launched.stdout.split())
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}):\n{tail}")
    return peak_kib * 1024, seconds, tail  # ru_maxrss is in KiB on Linux


def to_markdown(report: dict) -> str:
    what = ("the default run" if report["default_run"]
            else f"a reduced run ({report['epochs']} epochs, {report['train_images']:,} "
                 f"training images), not the default run")
    return (f"# Peak memory of a training run\n\n{stamp_line(report['machine'])}\n\n"
            f"`{report['command']}`, {what}: train ({report['epochs']} epochs on "
            f"{report['train_images']:,} images), evaluate, figures. Peak resident memory "
            f"**{report['peak_rss_bytes'] / 2**30:.2f} GiB**, {report['wall_seconds']:.0f} s.\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--epochs", type=cli.positive_int,
                        help="default: the preset's (the default run)")
    parser.add_argument("--limit", type=cli.positive_int, help="training images (smoke runs)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    machine = describe_machine()
    options = ["--model", args.model]
    if args.epochs:
        options += ["--epochs", str(args.epochs)]
    if args.limit:
        options += ["--limit", str(args.limit)]
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        command = [sys.executable, str(REPO / "scripts" / "train.py"), *options,
                   "--output", str(run_dir)]
        peak_bytes, seconds, _ = measure(command)
        config = json.loads((run_dir / "config.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    report = {"machine": finished(machine), "model": args.model,
              "default_run": args.epochs is None and args.limit is None,
              "epochs": config["epochs"], "train_images": metrics["train_images"],
              "peak_rss_bytes": peak_bytes, "wall_seconds": seconds,
              "command": "scripts/train.py " + " ".join(options)}
    stem = "memory" if report["default_run"] else \
        f"memory_epochs{config['epochs']}" + (f"_limit{args.limit}" if args.limit else "")
    write_results(args.results_dir, stem, report, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
