"""What the persistent XLA compilation cache saves: the first epoch of a fresh process with
an empty cache against one whose cache holds the step from an earlier run.

    .venv/bin/python benchmarks/compile_cache.py            # every family, 3 rounds
    .venv/bin/python benchmarks/compile_cache.py --quick    # one family, one round

Each round, for each family: a new process trains the family's default recipe for two
epochs on ``--limit`` images with an empty cache directory ("cold"), then another process
does the same with that directory, now filled ("warm"); a third runs with the cache off.
Reported: the CPU seconds (all threads of the process: less sensitive than wall time to a
busy machine) and the wall seconds of the first epoch (graph tracing + compilation + one
epoch of steps) and of the second, every round and the median over all of them.

Writes benchmarks/results/compile_cache.json and .md (or into ``--results-dir``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
FAMILIES = ("stacked", "conv", "recurrent", "vae")
MODES = ("off", "cold", "warm")


def child(family: str, limit: int) -> None:
    """Runs in the measured process: prints the two epochs' seconds as JSON."""
    from benchmarks.vs_pytorch import run_hml_vae
    from hml_vae.data import load_dataset

    data = load_dataset("fashion_mnist", limit=limit)
    result = run_hml_vae(family, data, epochs=2, seed=0, precision="float32")
    print(json.dumps({"wall": result["epoch_seconds"], "cpu": result["epoch_cpu_seconds"]}))


def measure(family: str, limit: int, cache: str) -> dict[str, list[float]]:
    from benchmarks.machine import run_child

    return run_child(__file__, ["--child", family, "--limit", str(limit)],
                     HML_VAE_COMPILE_CACHE=cache)


def to_markdown(report: dict) -> str:
    """The report, from the results file alone."""
    from benchmarks.machine import stamp_line

    protocol, runs, summary = report["protocol"], report["runs"], report["summary"]
    lines = ["# The persistent XLA compilation cache: CPU seconds of the first epoch", "",
             stamp_line(report["machine"]) + f" {protocol['limit']:,} images, every round "
             "then the median.", "",
             "| family | cache off | empty cache (cold) | filled cache (warm) | second epoch, "
             "warm |", "|---|---|---|---|---|"]
    for family, by_mode in runs.items():
        cells = [" / ".join(f"{v['cpu'][0]:.1f}" for v in by_mode[mode])
                 + f" (median **{summary[family][mode]['cpu_first_epoch_median']:.1f}**)"
                 for mode in MODES]
        lines.append(f"| {family} | " + " | ".join(cells)
                     + f" | {summary[family]['warm']['cpu_second_epoch_median']:.2f} |")
    if report.get("note"):
        lines += ["", report["note"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=4096)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.limit)
        return 0
    if args.quick:
        args.families, args.rounds, args.limit = ["stacked"], 1, 512

    from benchmarks.machine import describe_machine, finished, write_results

    machine = describe_machine()
    runs = {family: {mode: [] for mode in MODES} for family in args.families}
    for round_index in range(args.rounds):
        for family in args.families:
            with tempfile.TemporaryDirectory() as cache:
                seconds = {"off": measure(family, args.limit, "off"),
                           "cold": measure(family, args.limit, cache),
                           "warm": measure(family, args.limit, cache)}
            for mode, values in seconds.items():
                runs[family][mode].append(values)
            print(f"round {round_index + 1} {family}: first epoch CPU " + ", ".join(
                f"{mode} {values['cpu'][0]:.2f} s" for mode, values in seconds.items()),
                flush=True)
    summary = {
        family: {mode: {f"{clock}_{epoch}_epoch_median": statistics.median(
                            v[clock][index] for v in values)
                        for clock in ("cpu", "wall")
                        for index, epoch in enumerate(("first", "second"))}
                 for mode, values in by_mode.items()}
        for family, by_mode in runs.items()}
    report = {"machine": finished(machine),
              "protocol": {"rounds": args.rounds, "limit": args.limit, "epochs": 2},
              "summary": summary, "runs": runs}
    stem = "compile_cache_quick" if args.quick else "compile_cache"
    write_results(args.results_dir, stem, report, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
