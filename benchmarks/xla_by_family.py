"""Training speed of each model family with and without XLA (``jit_compile``): the
measurements behind each family's ``xla`` default (``hml_vae.families``): whether it
compiles its training step with XLA by default.

    .venv/bin/python benchmarks/xla_by_family.py                      # about 15 minutes
    .venv/bin/python benchmarks/xla_by_family.py --families vae,denoising --limit 2000

Each family is trained with its default preset (HOML's recipe) on ``--limit`` training
images, once with XLA and once without: one epoch to compile (reported as the first
epoch), then ``--rounds`` epochs of each, alternating, so that both see the same load.
Reports the median seconds per epoch and the speed-up: steady state (median of the timed
epochs) and counting the first (compiling) epoch. Every epoch is in the results file.
Writes xla_by_family.json and .md (a subset of families: ``_partial``) to --results-dir
(default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe_machine, finished, stamp_line  # noqa: E402
from benchmarks.throughput import RESULTS  # noqa: E402
from hml_vae import cli  # noqa: E402

FAMILIES = ("stacked", "tied", "sparse", "denoising", "vae", "conv", "conv_vae", "recurrent")


def timed_fit(model, dataset) -> float:
    started = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - started


def measure(families, data, rounds: int) -> dict:
    """{family: {"xla"|"no_xla": {"first_epoch": s, "epochs": [s, ...]}}}."""
    from hml_vae import training
    from hml_vae.config import make_config

    trainers = {}
    for family in families:
        for jit_compile in (True, False):
            config = make_config(family, jit_compile=jit_compile).for_images(data.image_shape)
            models = training.build_and_compile(config)
            train = training.make_training_data(config, data)[0].build(first_epoch=0,
                                                                         epochs=1)
            results = {"first_epoch": timed_fit(models.whole, train), "epochs": []}
            trainers[(family, "xla" if jit_compile else "no_xla")] = (models.whole, train,
                                                                      results)
    for round_index in range(rounds):
        order = list(trainers) if round_index % 2 == 0 else list(reversed(trainers))
        for key in order:
            model, train, results = trainers[key]
            results["epochs"].append(timed_fit(model, train))
    measured: dict = {}
    for (family, mode), (_, _, results) in trainers.items():
        measured.setdefault(family, {})[mode] = results
    return measured


def to_markdown(report: dict) -> str:
    """The report, from the results file alone."""
    protocol = report["protocol"]
    lines = [
        "# Training speed with and without XLA, per model family", "",
        stamp_line(report["machine"]), "",
        f"Default presets, {protocol['train_images']:,} training images; one epoch each to "
        f"compile, then {protocol['rounds']} epochs each, alternating. Speed-up: seconds "
        f"without XLA over seconds with it (> 1: XLA is faster).", "",
        "| family | s/epoch without XLA (each) | s/epoch with XLA (each) | speed-up, "
        "medians | speed-up with the first epoch | first epoch (with / without) | "
        "XLA by default |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        modes = report["runs"][row["family"]]
        lines.append(
            f"| {row['family']} | "
            + " / ".join(f"{value:.2f}" for value in modes["no_xla"]["epochs"])
            + f" (median {row['no_xla_seconds']:.2f}) | "
            + " / ".join(f"{value:.2f}" for value in modes["xla"]["epochs"])
            + f" (median {row['xla_seconds']:.2f}) | {row['speedup']:.2f}× | "
            f"{row['speedup_with_first_epoch']:.2f}× | {row['xla_first_epoch']:.1f} / "
            f"{row['no_xla_first_epoch']:.1f} s | {'yes' if row['xla_by_default'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", type=cli.name_list(FAMILIES, "families"),
                        default=FAMILIES)
    parser.add_argument("--limit", type=int, default=10_000, help="training images")
    parser.add_argument("--rounds", type=cli.positive_int, default=3)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    machine = describe_machine()

    from hml_vae import families
    from hml_vae.data import load_dataset

    xla_families = [name for name in families.names() if families.get(name).xla]

    data = load_dataset("fashion_mnist", limit=args.limit, binarize="dynamic")
    measured = measure(args.families, data, args.rounds)
    rows = []
    for family, modes in measured.items():
        xla = statistics.median(modes["xla"]["epochs"])
        plain = statistics.median(modes["no_xla"]["epochs"])
        xla_total = modes["xla"]["first_epoch"] + sum(modes["xla"]["epochs"])
        plain_total = modes["no_xla"]["first_epoch"] + sum(modes["no_xla"]["epochs"])
        rows.append({"family": family, "xla_seconds": xla, "no_xla_seconds": plain,
                     "speedup": plain / xla, "speedup_with_first_epoch": plain_total / xla_total,
                     "xla_first_epoch": modes["xla"]["first_epoch"],
                     "no_xla_first_epoch": modes["no_xla"]["first_epoch"],
                     "xla_by_default": family in xla_families})
    report = {"machine": finished(machine),
              "protocol": {"train_images": len(data.train.images), "rounds": args.rounds,
                           "presets": "default"},
              "rows": rows, "runs": measured}
    suffix = "" if args.families == FAMILIES else "_partial"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"xla_by_family{suffix}.json").write_text(
        json.dumps(report, indent=2) + "\n")
    (args.results_dir / f"xla_by_family{suffix}.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
