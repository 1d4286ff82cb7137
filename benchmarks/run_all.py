"""Regenerates every results file of benchmarks/results/ from the current code.

    python benchmarks/run_all.py --full                     # make bench: hours on 2 cores
    python benchmarks/run_all.py --full --only throughput,memory
    python benchmarks/run_all.py --quick                    # make bench-quick: minutes
    python benchmarks/run_all.py --quick --results-dir /tmp/bench

``--full`` runs each benchmark's own protocol and writes into benchmarks/results/.
``--quick`` runs each one at a tiny size into a temporary directory (kept and printed;
never the committed results): it checks that every benchmark still runs and writes the
results its report and the README's tables read (tests/test_benchmarks.py calls it).
Every results file is stamped by benchmarks/machine.py (commit, dirty tree, date, machine,
load average before and after). The benchmarks run one after the other in this process,
in the order below; a failing one is reported and the others still run, and the exit code
is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from any checkout

RESULTS = ROOT / "benchmarks" / "results"

# name: (arguments of the full protocol, arguments of the quick run). Each benchmark's main
# takes these plus --results-dir.
BENCHMARKS = {
    "throughput": ([], ["--epochs", "2", "--rounds", "1", "--limit", "512",
                        "--peak-size", "256", "--peak-repeats", "1", "--peak-modes", "tf",
                        "--without-torch-if-missing",
                        "--implementations", "hml_vae,torch"]),
    "memory": ([], ["--epochs", "1", "--limit", "300"]),
    "evaluation_speed": ([], ["--samples", "8", "--images", "64", "--loop-images", "2",
                              "--loop-slices", "2", "--limit", "256", "--peak-size", "256",
                              "--peak-modes", "tf"]),
    "xla_by_family": ([], ["--families", "vae", "--limit", "256", "--rounds", "1"]),
    "serving_latency": ([], ["--models", "stacked", "--limit", "128", "--repeats", "3",
                             "--warmup", "1"]),
    "distribution": ([], ["--limit", "256", "--epochs", "2",
                          "--setups", "default"]),
    "vae_likelihood": ([], ["--recipes", "homl", "--limit", "256", "--epochs", "1",
                            "--iwae-samples", "4"]),
    "semi_supervised": ([], ["--encoders", "stacked", "--limit", "300", "--encoder-epochs",
                             "1", "--labels", "20", "--seeds", "1", "--epochs", "1"]),
    "homl_zoo": (["--full"], ["--quick", "--families", "stacked"]),
    # 20,000 training images: images/s do not depend on how many there are, and seven
    # families x four implementations x three rounds of all 55,000 take about an hour.
    "vs_pytorch": (["--limit", "20000"], ["--quick", "--without-torch-if-missing"]),
    "compile_cache": ([], ["--quick"]),
    "recurrent_levers": ([], ["--quick"]),
    "denoising_noise": ([], ["--quick"]),
    "conv_levers": (["--op-profile"], ["--quick"]),
}


def benchmark_arguments(name: str, quick: bool, results_dir: Path, scratch: Path) -> list[str]:
    full, small = BENCHMARKS[name]
    arguments = [*(small if quick else full), "--results-dir", str(results_dir)]
    if name == "semi_supervised":  # fresh encoder runs: never reuse those of older code
        arguments += ["--runs-dir", str(scratch / "semi_supervised_runs")]
    return arguments


def run(names, quick: bool, results_dir: Path) -> dict[str, str]:
    """Runs each benchmark's main; returns {name: error} for those that failed."""
    failures = {}
    with tempfile.TemporaryDirectory(prefix="hml_vae-bench-") as scratch:
        for name in names:
            arguments = benchmark_arguments(name, quick, results_dir, Path(scratch))
            print(f"== {name} {' '.join(arguments)}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                code = importlib.import_module(f"benchmarks.{name}").main(arguments)
            except SystemExit as exit_:  # argparse errors, cli.run_main
                code = exit_.code
            except Exception:  # one broken benchmark must not hide the others' results
                code = traceback.format_exc(limit=-3)
            if code not in (None, 0):
                failures[name] = str(code)
            print(f"== {name}: {'failed' if name in failures else 'done'} in "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return failures


def parse_args(argv=None) -> argparse.Namespace:
    from hml_vae import cli

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--full", action="store_true", help="each benchmark's own protocol")
    size.add_argument("--quick", action="store_true", help="tiny sizes, a few minutes")
    parser.add_argument("--only", type=cli.name_list(tuple(BENCHMARKS), "benchmarks"),
                        default=tuple(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--results-dir", type=Path,
                        help="default: benchmarks/results/ (--full), a new temporary "
                        "directory (--quick)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    results_dir = args.results_dir
    if results_dir is None:
        results_dir = (Path(tempfile.mkdtemp(prefix="hml_vae-bench-quick-")) if args.quick
                       else RESULTS)
    elif args.quick and results_dir.resolve() == RESULTS.resolve():
        print(f"error: --quick never writes into {RESULTS} (the committed results); give "
              f"another --results-dir or none.", file=sys.stderr)
        return 2
    failures = run(args.only, args.quick, results_dir)
    print(f"Results in {results_dir}", file=sys.stderr)
    for name, error in failures.items():
        print(f"{name} failed: {error.strip().splitlines()[-1]}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
