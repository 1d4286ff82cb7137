"""Training speed of each model family with and without XLA (``jit_compile``): the
measurements behind each family's ``xla`` default (``hml_vae.families``): whether it
compiles its training step with XLA by default.

    .venv/bin/python benchmarks/xla_by_family.py                      # about 15 minutes
    .venv/bin/python benchmarks/xla_by_family.py --families vae,denoising --limit 2000

Each family is trained with its default preset (HOML's recipe; the VAEs on dynamically
binarized images) on ``--limit`` training images, once with XLA and once without: one
epoch to compile (reported as the first epoch), then ``--rounds`` epochs of each,
alternating, so that both see the same load. Reports the median seconds per epoch and the
speed-up. Writes benchmarks/results/xla_by_family.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe_machine  # noqa: E402
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
            train, _ = training.make_training_data(config, data)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", type=cli.name_list(FAMILIES, "families"),
                        default=FAMILIES)
    parser.add_argument("--limit", type=int, default=10_000, help="training images")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from hml_vae import families
    from hml_vae.data import load_dataset

    xla_families = [name for name in families.names() if families.get(name).xla]

    data = load_dataset("fashion_mnist", limit=args.limit, binarize="dynamic")
    measured = measure(args.families, data, args.rounds)
    rows = []
    for family, modes in measured.items():
        xla = statistics.median(modes["xla"]["epochs"])
        plain = statistics.median(modes["no_xla"]["epochs"])
        rows.append({"family": family, "xla_seconds": xla, "no_xla_seconds": plain,
                     "speedup": plain / xla, "xla_first_epoch": modes["xla"]["first_epoch"],
                     "no_xla_first_epoch": modes["no_xla"]["first_epoch"],
                     "xla_by_default": family in xla_families})
    report = {"machine": describe_machine(),
              "protocol": {"train_images": len(data.train.images), "rounds": args.rounds,
                           "presets": "default"},
              "rows": rows, "runs": measured}
    suffix = "" if args.families == FAMILIES else "_partial"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"xla_by_family{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    machine = report["machine"]
    lines = [
        "# Training speed with and without XLA, per model family", "",
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, load average "
        f"{machine['load_average_at_start'][0]:.1f} at the start. Default presets, "
        f"{len(data.train.images):,} training images, median of {args.rounds} epochs each, "
        f"alternating.", "",
        "| family | s/epoch without XLA | s/epoch with XLA | speed-up | first epoch "
        "(with / without) | XLA by default |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['family']} | {row['no_xla_seconds']:.2f} | {row['xla_seconds']:.2f} | "
            f"{row['speedup']:.2f}× | {row['xla_first_epoch']:.1f} / "
            f"{row['no_xla_first_epoch']:.1f} s | {'yes' if row['xla_by_default'] else 'no'} |")
    lines.append("")
    (RESULTS / f"xla_by_family{suffix}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
