"""The README's benchmark tables, generated from benchmarks/results/ (no hand-copied numbers).

    python benchmarks/readme_tables.py           # rewrite README.md's generated sections
    python benchmarks/readme_tables.py --check   # exit 1 if they differ from the results

A generated section sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``
in README.md; everything between the markers is replaced by SECTIONS[NAME](results dir).
A results file without a stamp of benchmarks/machine.py, or with a ``stale`` entry, was
made by older code and not re-run: its row says so and names the commit it was made at.
tests/test_benchmarks.py fails when README.md differs from what this script writes.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from any checkout: the benchmarks' own table builders
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
MARKERS = re.compile(r"(<!-- generated:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)"
                     r"(<!-- /generated:(?P=name) -->)", re.DOTALL)


def load(results_dir: Path, stem: str) -> dict | None:
    path = results_dir / f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else None


def provenance(report: dict, stem: str) -> str:
    """'commit, date' of a stamped results file, or a stale label naming its commit."""
    if "stale" in report:
        stale = report["stale"]
        return (f"**stale**: made at {stale['commit']} ({stale['date']}) by older code, not "
                f"re-run")
    machine = report["machine"]
    dirty = " + uncommitted changes" if machine["dirty"] else ""
    load = (f"load {machine['load_average_before'][0]:.1f} → "
            f"{machine['load_average_after'][0]:.1f}")
    return f"{machine['commit']}{dirty}, {machine['date'][:10]}, {load}"


def measured_at(report: dict, stem: str) -> str:
    """The sentence that opens a generated table: where and when, or that it is stale."""
    where = provenance(report, stem)
    return where if "stale" in report else f"Measured at {where}"


def missing(stem: str) -> list[str]:
    return [f"| {stem} | no results file: run `python benchmarks/run_all.py --full --only "
            f"{stem}` | | |"]


def throughput_rows(results_dir: Path) -> list[str]:
    report = load(results_dir, "throughput")
    if report is None:
        return missing("throughput")
    where = provenance(report, "throughput")
    if "stale" in report:  # an older schema: no numbers that could be misread as current
        return [f"| dense VAE 784-400-20 training throughput against PyTorch | see "
                f"`throughput.md` | {where} | `throughput.md` |"]
    summary, ratios, protocol = report["summary"], report["ratios"], report["protocol"]
    mine = summary["hml_vae"]
    speeds = "; ".join(f"{name} {row['images_per_second']:,.0f}"
                       for name, row in summary.items() if name != "hml_vae")
    rows = [
        f"| dense VAE 784-400-20, batch 128, training images/s ({protocol['rounds']} rounds × "
        f"{protocol['epochs']} epochs; median of every epoch 2.. of every round) | hml_vae "
        f"**{mine['images_per_second']:,.0f}** ({mine['images_per_second_with_first_epoch']:,.0f}"
        f" counting the first, compiling epoch); {speeds} | {where} | `throughput.md` |",
    ]
    for name in ("torch", "torch_dataloader"):
        if name in ratios:
            ratio = ratios[name]
            rows.append(
                f"| hml_vae's speed over {name} (per round, median) | steady **"
                f"{ratio['steady']:.2f}×** (" + " / ".join(
                    f"{value:.2f}" for value in ratio["steady_by_round"])
                + f"); with the first epoch {ratio['with_first_epoch']:.2f}× (" + " / ".join(
                    f"{value:.2f}" for value in ratio["with_first_epoch_by_round"])
                + f") | {where} | `throughput.md` |")
    elbo = "; ".join(f"{name} {row['test_neg_elbo_gray']:.2f}" for name, row in summary.items())
    rows += [
        f"| test −ELBO after the same epochs (gray pixels, a loss; nats/image, median over "
        f"rounds) | {elbo} | {where} | `throughput.md` |",
        f"| FLOP/s of hml_vae's step ({protocol['flops_per_image'] / 1e6:.2f} MFLOP/image) | "
        f"{mine['achieved_flops'] / 1e9:.1f} GFLOP/s, **{100 * mine['fraction_of_peak']:.0f} "
        f"%** of the {report['matmul_peak']['peak_flops'] / 1e9:.1f} GFLOP/s float32 matmul "
        f"peak measured in the same run | {where} | `throughput.md` |",
    ]
    return rows


def evaluation_rows(results_dir: Path) -> list[str]:
    report = load(results_dir, "evaluation_speed")
    if report is None:
        return missing("evaluation_speed")
    return [f"| importance-weighted −log p(x), K = {report['samples_k']:,}, "
            f"{report['images']:,} test images | **{report['vectorised_seconds']:.0f} s**; "
            f"{report['speed_up']:.1f}× a per-image loop (measured around it in the same run) "
            f"| {provenance(report, 'evaluation_speed')} | `evaluation_speed.md` |"]


def memory_rows(results_dir: Path) -> list[str]:
    report = load(results_dir, "memory")
    if report is None:
        return missing("memory")
    if "stale" in report:
        what = f"`train.py --model vae --epochs {report['epochs']}`"
    else:
        what = (f"`{report['command']}`, " + ("the default run" if report["default_run"]
                                               else "a reduced run")
                + f" ({report['epochs']} epochs on {report['train_images']:,} images)")
    return [f"| peak resident memory of {what}: train, evaluate, figures | "
            f"**{report['peak_rss_bytes'] / 2**30:.2f} GiB** | "
            f"{provenance(report, 'memory')} | `memory.md` |"]


def serving_rows(results_dir: Path) -> list[str]:
    report = load(results_dir, "serving_latency")
    if report is None:
        return missing("serving_latency")
    cells = "; ".join(
        f"{model} batch {row['batch_size']}: {row['median_ms']:.2f} ms (p99 "
        f"{row['p99_ms']:.2f})" for model, rows in report["results"].items() for row in rows)
    return [f"| `serving_default` latency via `tf.saved_model.load`, median ({report['repeats']}"
            f" calls) | {cells} | {provenance(report, 'serving_latency')} | "
            f"`serving_latency.md` |"]


def xla_rows(results_dir: Path) -> list[str]:
    report = load(results_dir, "xla_by_family")
    if report is None:
        return missing("xla_by_family")
    cells = "; ".join(f"{row['family']} {row['speedup']:.2f}×" for row in report["rows"])
    return [f"| training speed with XLA over without, per family (default presets, median "
            f"epoch) | {cells} | {provenance(report, 'xla_by_family')} | `xla_by_family.md` |"]


def distribution_rows(results_dir: Path) -> list[str]:
    report = load(results_dir, "distribution")
    if report is None:
        return missing("distribution")
    base = report["rows"][0]["median_epoch_seconds"]
    cells = "; ".join(f"{row['setup']} {row['median_epoch_seconds'] / base:.2f}×"
                      for row in report["rows"][1:])
    return [f"| epoch time under tf.distribute over one device (the overhead on 2 shared CPU "
            f"cores, not a speed-up) | {cells} | {provenance(report, 'distribution')} | "
            f"`distribution.md` |"]


def performance(results_dir: Path) -> str:
    rows = ["| what | number | measured at (commit, date, 1-min load before → after) | "
            "results file |", "|---|---|---|---|"]
    for make_rows in (throughput_rows, evaluation_rows, memory_rows, serving_rows, xla_rows,
                      distribution_rows):
        rows += make_rows(results_dir)
    return "\n".join(rows) + "\n"


def throughput_rounds(results_dir: Path) -> str:
    """Every round of every implementation, steady state and with the first epoch."""
    report = load(results_dir, "throughput")
    if report is None or "stale" in report:
        return "No current throughput results (run `python benchmarks/run_all.py --full " \
               "--only throughput`).\n"
    lines = ["| implementation | images/s per round, steady | median | images/s per round, "
             "with the first epoch | median |", "|---|---|---|---|---|"]
    for name, runs in report["runs"].items():
        row = report["summary"][name]
        with_first = [run["images_per_epoch"] * len(run["epoch_seconds"])
                      / sum(run["epoch_seconds"]) for run in runs]
        lines.append(
            f"| {name} | " + " / ".join(f"{value:,.0f}" for value in
                                       row["images_per_second_by_round"])
            + f" | {row['images_per_second']:,.0f} | "
            + " / ".join(f"{value:,.0f}" for value in with_first)
            + f" | {statistics.median(with_first):,.0f} |")
    return "\n".join(lines) + "\n"


def book_vs_ours(results_dir: Path) -> str:
    """benchmarks/homl_zoo.py's table: each family's validation loss beside the book's."""
    from benchmarks import homl_zoo

    report = load(results_dir, "homl_zoo")
    if report is None:
        return "No results (run `python benchmarks/run_all.py --full --only homl_zoo`).\n"
    return "\n".join([f"{measured_at(report, 'homl_zoo')}; seeds "
                      f"{', '.join(map(str, report['seeds']))}.", "",
                      *homl_zoo.table(report)]) + "\n"


def vs_pytorch(results_dir: Path) -> str:
    """benchmarks/vs_pytorch.py's ratios at matched precisions (its .md has every pair)."""
    from benchmarks import vs_pytorch as benchmark

    report = load(results_dir, "vs_pytorch")
    if report is None:
        return "No results (run `python benchmarks/run_all.py --full --only vs_pytorch`).\n"
    protocol = report["protocol"]
    pairs = {("hml_vae", "torch"), ("hml_vae_cached", "torch"),
             ("hml_vae_bf16", "torch_bf16")}
    return "\n".join([
        f"{measured_at(report, 'vs_pytorch')}; {protocol['train_images']:,} "
        f"training images, {protocol['epochs']} epochs × {protocol['rounds']} rounds, "
        f"alternating. hml_vae's speed over PyTorch's: the median over every round, then "
        f"every round; the book's run is projected from these epochs (`vs_pytorch.md`).",
        "", *benchmark.comparison_table(report, pairs)]) + "\n"


def semi_supervised(results_dir: Path) -> str:
    """benchmarks/semi_supervised.py's accuracy table."""
    from benchmarks import semi_supervised as benchmark

    report = load(results_dir, "semi_supervised")
    if report is None:
        return "No results (run `python benchmarks/run_all.py --full --only " \
               "semi_supervised`).\n"
    return "\n".join([f"{measured_at(report, 'semi_supervised')}.", "",
                      *benchmark.accuracy_table(report)]) + "\n"


SECTIONS = {"semi_supervised": semi_supervised, "performance": performance,
            "throughput_rounds": throughput_rounds, "book_vs_ours": book_vs_ours,
            "vs_pytorch": vs_pytorch}


def render(readme: str, results_dir: Path = RESULTS) -> str:
    """``readme`` with every generated section rewritten from ``results_dir``."""
    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in SECTIONS:
            raise ValueError(f"README.md has a generated section {name!r}, but "
                             f"benchmarks/readme_tables.py knows only {', '.join(SECTIONS)}.")
        return match.group(1) + SECTIONS[name](results_dir) + match.group(4)

    return MARKERS.sub(replace, readme)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if README.md is not up to date")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    current = README.read_text()
    generated = render(current, args.results_dir)
    if args.check:
        if generated != current:
            print("README.md's generated sections differ from benchmarks/results/: run "
                  "python benchmarks/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
