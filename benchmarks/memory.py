"""Peak resident memory of a default VAE training run (scripts/train.py as users run it).

    .venv/bin/python benchmarks/memory.py              # the default preset, 3 epochs
    .venv/bin/python benchmarks/memory.py --epochs 25  # the whole default run

Runs the training script in a child process and reads the child's peak resident set size
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``); the peak is reached in the first epoch (data,
graphs) and evaluation, so a few epochs measure it. Writes benchmarks/results/memory.json
and .md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.throughput import RESULTS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, str(REPO / "scripts" / "train.py"), "--model", args.model,
                   "--epochs", str(args.epochs), "--output", str(Path(scratch) / "run")]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        return 1
    peak_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    report = {"machine": describe_machine(), "model": args.model, "preset": "default",
              "epochs": args.epochs, "peak_rss_bytes": peak_bytes, "wall_seconds": seconds,
              "command": " ".join(command[1:-2])}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(report, indent=2) + "\n")
    text = (f"# Peak memory of a training run\n\n`{report['command']}` (train, evaluate, "
            f"figures): peak resident memory **{peak_bytes / 2**30:.2f} GiB**, "
            f"{seconds:.0f} s, on {report['machine']['cpu']} ({report['machine']['cpu_count']} "
            f"cores).\n")
    (RESULTS / "memory.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
