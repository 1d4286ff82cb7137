"""Epoch time of the dense VAE (HOML's 784-150-100-10 recipe) on one device, on two mirrored
CPU replicas, and on one and two local workers (MultiWorkerMirroredStrategy on 127.0.0.1).

    python benchmarks/distribution.py                          # 10,000 images, 4 epochs
    python benchmarks/distribution.py --limit 5000 --epochs 3  # a brief run

On a machine without GPUs all replicas and workers share the same CPU cores, so this
measures the overhead of distribution (splitting batches, all-reducing gradients, gRPC
between workers), not a speed-up: the work per epoch is the same, the cores are not more.
On several GPUs or hosts the same commands spread the work.

Every setup runs scripts/train.py (or scripts/launch_local_cluster.py) as a user would,
one after the other; the epoch time is the median of ``epoch_seconds`` in history.json over
every epoch but the first (which traces the train function). Writes
``distribution[_limitN].json`` and ``.md`` to --results-dir (default benchmarks/results/)
with the machine. Times on a shared machine are noisy: read the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from any checkout

from benchmarks.machine import (  # noqa: E402
    child_environment,
    describe_machine,
    finished,
    stamp_line,
    write_results,
)
from hml_vae import cli  # noqa: E402

# (name, script, script arguments before --, train arguments)
SETUPS = (
    ("1 device (default)", "train.py", [], ["--strategy", "default"]),
    ("mirrored, 2 CPU replicas", "train.py", [], ["--strategy", "mirrored",
                                                  "--cpu-replicas", "2"]),
    ("multi_worker, 1 local worker", "launch_local_cluster.py", ["--workers", "1", "--"], []),
    ("multi_worker, 2 local workers", "launch_local_cluster.py", ["--workers", "2", "--"], []),
)
# Short names for --setups (the setups' own names have commas).
SETUP_KEYS = dict(zip(("default", "mirrored", "multi_worker_1", "multi_worker_2"),
                      (name for name, *_ in SETUPS), strict=True))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=cli.positive_int, default=10_000,
                        help="training images (default: 10000)")
    parser.add_argument("--epochs", type=cli.positive_int, default=4,
                        help="epochs per setup; the first is not timed (default: 4)")
    parser.add_argument("--timeout", type=cli.positive_float, default=1800,
                        help="seconds per setup before it is stopped (default: 1800)")
    parser.add_argument("--setups", type=cli.name_list(tuple(SETUP_KEYS), "setups"),
                        default=tuple(SETUP_KEYS), help="comma-separated subset (smoke runs)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args(argv)


def run_setup(name: str, script: str, before: list[str], train_args: list[str],
              args: argparse.Namespace, runs_dir: Path) -> dict:
    """Trains the dense VAE in one setup; returns its epoch times."""
    run_dir = runs_dir / name.replace(" ", "_").replace(",", "").replace("(", "").replace(
        ")", "")
    command = [sys.executable, str(REPO / "scripts" / script), *before,
               "--model", "vae", "--limit", str(args.limit), "--epochs", str(args.epochs),
               "--iwae-samples", "10", "--no-plots", "--output", str(run_dir), *train_args]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                            cwd=REPO, env=child_environment())
    wall = time.perf_counter() - started
    if result.returncode != 0:
        print((result.stdout + result.stderr)[-3000:], file=sys.stderr)
        raise RuntimeError(f"{name} failed with exit code {result.returncode}; its output's "
                           f"end is printed above.")
    history = json.loads((run_dir / "history.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    seconds = history["epoch_seconds"]
    timed = seconds[1:] or seconds
    return {
        "setup": name,
        "replicas": metrics["replicas"],
        "first_epoch_seconds": seconds[0],
        "median_epoch_seconds": statistics.median(timed),
        "timed_epochs": len(timed),
        "final_loss": history["loss"][-1],
        "command_seconds": wall,
    }


def to_markdown(header: dict) -> str:
    """The report, from the results file alone."""
    rows = header["rows"]
    base = rows[0]["median_epoch_seconds"]
    lines = [
        "# Distribution overhead: dense VAE epoch time",
        "",
        f"HOML's dense VAE (784-150-100-10, batch 128 global, the book's Gaussian decoder of "
        f"σ² = 1/2), {header['limit']} training images, {header['epochs']} epochs per setup; "
        f"epoch time is the median over epochs 2..{header['epochs']} (epoch 1 traces).",
        "",
        f"**Read this as overhead, not speed-up**: the machine has {header['machine']['cpu_count']}"
        f" CPU cores and {header['machine']['gpus']} GPUs, so two replicas or two workers "
        f"share the same cores as one. Ratios within this run are what to compare.",
        "",
        stamp_line(header["machine"]),
        "",
        "| setup | replicas | median epoch (s) | vs 1 device | first epoch (s) | "
        "final loss | whole command (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['setup']} | {row['replicas']} | {row['median_epoch_seconds']:.2f} | "
            f"{row['median_epoch_seconds'] / base:.2f}x | {row['first_epoch_seconds']:.2f} | "
            f"{row['final_loss']:.2f} | {row['command_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    machine = describe_machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hml_vae-distribution-") as runs_dir:
        for name, script, before, train_args in SETUPS:
            if name not in {SETUP_KEYS[key] for key in args.setups}:
                continue
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows.append(run_setup(name, script, before, train_args, args, Path(runs_dir)))
            print(f"  median epoch {rows[-1]['median_epoch_seconds']:.2f} s", file=sys.stderr)
    report = {"limit": args.limit, "epochs": args.epochs, "machine": finished(machine),
              "rows": rows}
    stem = "distribution" if args.limit == 10_000 else f"distribution_limit{args.limit}"
    if tuple(args.setups) != tuple(SETUP_KEYS):
        stem += "_partial"
    write_results(args.results_dir, stem, report, to_markdown)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
