"""The denoising family's input noise: Keras' Dropout/GaussianNoise against hml_vae's layers
that draw from their own saved random state (hml_vae.families.denoising), with and without
XLA: the measurements behind the family's ``xla`` default.

    .venv/bin/python benchmarks/denoising_noise.py          # 55,000 images: ~10 min on 2 cores
    .venv/bin/python benchmarks/denoising_noise.py --limit 8000 --noises dropout,gaussian \
        --variants keras,keras_xla,stateful_xla,stateful    # every variant, smaller
    .venv/bin/python benchmarks/denoising_noise.py --quick --results-dir /tmp/bench

Each round trains every variant from scratch on the default preset (HOML's recipe: the
stacked 784-100-30-100-784 model, Dropout(0.5) or GaussianNoise(0.2) on its inputs, MSE,
Nadam, batch 32) through hml_vae's training path (``build_and_compile``,
``make_training_data``, ``fit``) on ``--limit`` training images for ``--epochs`` epochs:

- ``keras``: Keras' noise layers, without XLA (the family's earlier default);
- ``keras_xla``: Keras' noise layers with XLA (why that default was chosen);
- ``stateful_xla`` and ``stateful``: hml_vae's layers with and without XLA.

Variants alternate (reversed order every other round) so that all see the same load; round
``r`` seeds every variant with ``seed + r`` (same initial weights and data order, each
variant its own noise). Reports every round and the median: the first (compiling) epoch's
and the later epochs' wall and CPU seconds (process time, all threads), the validation
loss after the last epoch (other noise draws, so it may differ within the spread of the
rounds), and a 10-epoch run (the preset's) projected from them. XLA's persistent
compilation cache is off (``HML_VAE_COMPILE_CACHE=off``, unless set otherwise) so that
every first epoch compiles, as a user's first run does; the report says whether it was on.
Writes denoising_noise.json and .md to --results-dir (default benchmarks/results/); a run
with other --limit/--epochs/--rounds names them in its file name, a --quick run writes
denoising_noise_quick.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from pathlib import Path
from unittest import mock

os.environ.setdefault("HML_VAE_COMPILE_CACHE", "off")  # before hml_vae sets TF_XLA_FLAGS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import (  # noqa: E402
    describe_machine,
    epoch_timer,
    finished,
    stamp_line,
    write_results,
)
from hml_vae import cli  # noqa: E402

VARIANTS = ("keras", "keras_xla", "stateful_xla", "stateful")
QUICK = {"limit": 512, "epochs": 2, "rounds": 1, "variants": ("keras", "stateful_xla"),
         "noises": ("dropout",)}
# A default run trains 10 epochs: what the first epoch's compilation costs is weighed
# against that many epochs.
RUN_EPOCHS = 10


def keras_noise_layer(noise, noise_stddev=0.2, dropout_rate=0.5, seed=None):
    """Keras' own noise layers, as the family built them before it had its own."""
    import keras

    if noise == "gaussian":
        return keras.layers.GaussianNoise(noise_stddev, seed=seed, name="noise")
    return keras.layers.Dropout(dropout_rate, seed=seed, name="noise")


def train_variant(variant: str, noise: str, data, epochs: int, seed: int) -> dict:
    """One fresh training run of ``variant``: its epochs' seconds and last validation loss."""
    import keras

    from hml_vae import training
    from hml_vae.config import make_config
    from hml_vae.families import denoising

    config = make_config("denoising", "default", noise=noise, epochs=epochs, seed=seed,
                         jit_compile=variant.endswith("xla")).for_images(data.image_shape)
    keras.utils.set_random_seed(seed)
    layers = (mock.patch.object(denoising, "make_noise_layer", keras_noise_layer)
              if variant.startswith("keras") else contextlib.nullcontext())
    with layers:
        models = training.build_and_compile(config)
    noise_layer = models.encoder.get_layer("noise")
    train, valid = training.make_training_data(config, data)
    timer = epoch_timer()
    history = models.whole.fit(**training.fit_arguments(models.whole, train, valid,
                                                        callbacks=[timer]),
                               epochs=epochs, shuffle=False, verbose=0)
    return {"layer": type(noise_layer).__name__, "first_epoch": timer.wall[0],
            "steady_epoch": statistics.median(timer.wall[1:]) if epochs > 1 else None,
            "epochs": timer.wall, "cpu_seconds": sum(timer.cpu), "epoch_cpu": timer.cpu,
            "val_loss": history.history["val_loss"][-1]}


def measure(noise: str, variants, data, epochs: int, rounds: int, seed: int) -> dict:
    """{variant: [one run per round]}, the variants alternating."""
    runs: dict = {variant: [] for variant in variants}
    for round_index in range(rounds):
        order = variants if round_index % 2 == 0 else tuple(reversed(variants))
        for variant in order:
            run = train_variant(variant, noise, data, epochs, seed + round_index)
            print(f"{noise} round {round_index + 1} {variant}: first {run['first_epoch']:.2f} s"
                  f", cpu {run['cpu_seconds']:.1f} s, val_loss {run['val_loss']:.5f}",
                  file=sys.stderr, flush=True)
            runs[variant].append(run)
    return runs


def run_seconds(first: float, steady: float | None, epochs: int = RUN_EPOCHS) -> float:
    """Seconds of a run of ``epochs`` epochs: the first, then the steady ones."""
    return first + (epochs - 1) * (steady if steady is not None else first)


def with_epoch_cpu(run: dict) -> dict:
    """``run`` with its first epoch's CPU seconds and the median of the others'."""
    later = run["epoch_cpu"][1:]
    return {**run, "first_epoch_cpu": run["epoch_cpu"][0],
            "steady_epoch_cpu": statistics.median(later) if later else None}


def summarize(runs: dict) -> dict:
    """Medians over the rounds, per variant, and the projected run of RUN_EPOCHS epochs
    (wall and CPU seconds)."""
    summary = {}
    for variant, rounds in runs.items():
        rounds = [with_epoch_cpu(run) for run in rounds]

        def median(key, rounds=rounds):
            values = [run[key] for run in rounds if run[key] is not None]
            return statistics.median(values) if values else None
        row = {key: median(key) for key in ("first_epoch", "steady_epoch", "first_epoch_cpu",
                                            "steady_epoch_cpu", "cpu_seconds", "val_loss")}
        row["run_seconds"] = run_seconds(row["first_epoch"], row["steady_epoch"])
        row["run_cpu_seconds"] = run_seconds(row["first_epoch_cpu"], row["steady_epoch_cpu"])
        summary[variant] = row
    return summary


COLUMNS = (("first_epoch", "first epoch s", 2), ("steady_epoch", "steady epoch s", 2),
           ("first_epoch_cpu", "first epoch CPU s", 2),
           ("steady_epoch_cpu", "steady epoch CPU s", 2), ("cpu_seconds", "fit CPU s", 1),
           ("val_loss", "val loss", 5))


def to_markdown(report: dict) -> str:
    """The report, from the results file alone."""
    protocol = report["protocol"]
    cache = "on" if protocol["compile_cache"] else "off"
    lines = [
        "# Denoising input noise: Keras' layers against hml_vae's, with and without XLA", "",
        stamp_line(report["machine"]), "",
        f"Default preset, {protocol['train_images']:,} training images, {protocol['epochs']} "
        f"epochs per run, {protocol['rounds']} rounds, variants alternating (seed + round). "
        f"XLA compilation cache {cache}. Each cell: every round, then the median. Steady: "
        f"median of the epochs after the first; CPU: process seconds (all threads); fit CPU: "
        f"the whole fit; {RUN_EPOCHS}-epoch run: first epoch + {RUN_EPOCHS - 1} × steady "
        f"epoch (medians), in wall and CPU seconds, and its speed-up over `keras` (> 1: "
        f"faster). `keras`: keras.layers.Dropout/GaussianNoise; `stateful`: the family's "
        f"layers drawing from their saved Philox state; `_xla`: the step compiled with XLA.",
        "",
    ]
    for noise, by_noise in report["noises"].items():
        lines += [f"## {noise}", "",
                  "| variant | layer | " + " | ".join(title for _, title, _ in COLUMNS)
                  + f" | {RUN_EPOCHS}-epoch run s (wall / CPU) | speed-up (wall / CPU) |",
                  "|---|---|" + "---|" * (len(COLUMNS) + 2)]
        summary = by_noise["summary"]
        reference = summary.get("keras")
        for variant, rounds in by_noise["runs"].items():
            rounds = [with_epoch_cpu(run) for run in rounds]
            row = summary[variant]
            cells = []
            for key, _, digits in COLUMNS:
                values = [run[key] for run in rounds if run[key] is not None]
                cells.append(" / ".join(f"{value:.{digits}f}" for value in values)
                             + f" (**{row[key]:.{digits}f}**)" if values else "–")
            speedup = (f"{reference['run_seconds'] / row['run_seconds']:.2f}× / "
                       f"{reference['run_cpu_seconds'] / row['run_cpu_seconds']:.2f}×"
                       if reference else "–")
            lines.append(f"| {variant} | {rounds[0]['layer']} | " + " | ".join(cells)
                         + f" | {row['run_seconds']:.1f} / {row['run_cpu_seconds']:.1f} | "
                         f"{speedup} |")
        lines.append("")
    return "\n".join(lines)


def results_stem(args, defaults) -> str:
    """``denoising_noise``, or with the settings that differ from the full protocol's."""
    if args.quick:
        return "denoising_noise_quick"
    changed = [f"{key}{getattr(args, key)}" for key in ("limit", "epochs", "rounds")
               if getattr(args, key) != defaults[key]]
    return "_".join(["denoising_noise", *changed])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run under a minute: {QUICK}")
    parser.add_argument("--noises", type=cli.name_list(("dropout", "gaussian"), "noises"),
                        default=("dropout", "gaussian"))
    parser.add_argument("--variants", type=cli.name_list(VARIANTS, "variants"),
                        default=("keras", "stateful_xla", "stateful"))
    parser.add_argument("--limit", type=cli.positive_int,
                        help="training images (validation: proportionally fewer); default: "
                             "all, as the default run trains")
    parser.add_argument("--epochs", type=cli.positive_int, default=3)
    parser.add_argument("--rounds", type=cli.positive_int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    machine = describe_machine()

    from hml_vae import compile_cache
    from hml_vae.data import load_dataset

    data = load_dataset("fashion_mnist", limit=args.limit)
    # Not timed: what the process's first fit pays once (thread pools, oneDNN kernels for
    # these shapes) would otherwise count against the first variant of the first round.
    train_variant("stateful", args.noises[0], load_dataset("fashion_mnist", limit=256), 1,
                  args.seed)
    noises = {}
    for noise in args.noises:
        runs = measure(noise, tuple(args.variants), data, args.epochs, args.rounds, args.seed)
        noises[noise] = {"runs": runs, "summary": summarize(runs)}
    report = {"machine": finished(machine),
              "protocol": {"train_images": len(data.train.images),
                           "valid_images": len(data.valid.images), "epochs": args.epochs,
                           "rounds": args.rounds, "seed": args.seed, "preset": "default",
                           "compile_cache": compile_cache.FLAG in os.environ.get(
                               "TF_XLA_FLAGS", "")},
              "noises": noises}
    write_results(args.results_dir, results_stem(args, vars(parser.parse_args([]))), report,
                  to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
