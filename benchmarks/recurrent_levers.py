"""Training speed of the recurrent family with its LSTMs unrolled or looping, with and
without XLA: the measurements behind ``hml_vae.families.recurrent.UNROLL`` and the
family's ``xla`` default.

    .venv/bin/python benchmarks/recurrent_levers.py             # ~10 minutes on 2 cores
    .venv/bin/python benchmarks/recurrent_levers.py --variants loop_xla unrolled_xla --rounds 1
    .venv/bin/python benchmarks/recurrent_levers.py --quick --results-dir /tmp/bench

Variants: ``loop`` (Keras' LSTM loops over the rows with a while loop: on a CPU it has no
cuDNN kernel), ``unrolled`` (``unroll=True``: the 28 steps written out in the graph), each
with XLA (``_xla``) or without. Unrolled under XLA compiles for minutes, so the full
protocol leaves it out and the second command measures it apart.

Each variant trains the family's default recipe (HOML's: LSTM(100) -> LSTM(30),
RepeatVector, LSTM(100), a dense layer per row; Nadam, batch 32) on ``--limit``
Fashion-MNIST training images for ``--epochs`` epochs, built, compiled and fitted as
``scripts/train.py`` does, in a new process (so every first epoch pays its own tracing
and compilation, with the persistent XLA cache off: a step that has not been compiled on
this machine before). Each round runs every variant once, the order reversed every other
round, so that all of them see the same load. Reported per variant: the first epoch
(tracing + compilation + one epoch) and the median of the later ("steady") epochs, in
wall and CPU seconds (all threads of the process), every round and the median over the
rounds; the steady epoch as a ratio to the family's current default in the same round;
what 10 epochs on the full 55,000 images would cost (the first epoch's compile overhead
plus 10 steady epochs scaled to the full set); and the validation MSE after the last
epoch (the same seed and batches: the variants must agree to float32 rounding). Writes
recurrent_levers.json and .md to --results-dir (default benchmarks/results/); other
variants than the full protocol's name the file after them, ``--quick`` writes
recurrent_levers_quick.*.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import (  # noqa: E402
    describe_machine,
    epoch_timer,
    finished,
    run_child,
    stamp_line,
    write_results,
)

RESULTS = Path(__file__).resolve().parent / "results"
# name: (unroll, jit_compile)
VARIANTS = {
    "loop": (False, False),
    "loop_xla": (False, True),
    "unrolled": (True, False),
    "unrolled_xla": (True, True),
}
# Unrolled under XLA compiles for minutes on 2 cores: measured apart
# (recurrent_levers_loop_xla_unrolled_xla.md).
FULL_VARIANTS = ("loop", "loop_xla", "unrolled")
FULL_TRAIN_IMAGES = 55_000  # HOML's Fashion-MNIST training split
USER_EPOCHS = 10  # the default preset's


def child(variant: str, limit: int, epochs: int, seed: int) -> dict:
    """Runs in the measured process: the variant's training, timed epoch by epoch."""
    import keras

    from hml_vae import training
    from hml_vae.config import make_config
    from hml_vae.families.recurrent import build_recurrent

    unroll, jit_compile = VARIANTS[variant]
    config = make_config("recurrent", "default", limit=limit, epochs=epochs, seed=seed,
                         jit_compile=jit_compile)
    data, config = training.load_data(config)
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    # training.build_and_compile with the variant's unroll instead of the family's default.
    models = build_recurrent(config.image_shape, config.hidden, config.latent_dim,
                             unroll=unroll)
    training.compile_model(config, models.whole, config.family.loss)
    build_seconds = time.perf_counter() - started
    train, valid = training.make_training_data(config, data)
    timer = epoch_timer()
    history = models.whole.fit(**training.fit_arguments(models.whole, train, valid,
                                                        callbacks=[timer]),
                               epochs=epochs, shuffle=False, verbose=0)
    return {"wall": timer.wall, "cpu": timer.cpu, "build_seconds": build_seconds,
            "valid_mse": history.history["val_loss"][-1],
            "train_images": train.steps * config.batch_size}


def run_in_child(variant: str, limit: int, epochs: int, seed: int) -> dict:
    return run_child(__file__, ["--child", variant, "--limit", str(limit), "--epochs",
                                str(epochs), "--seed", str(seed)],
                     HML_VAE_COMPILE_CACHE="off")


def measure(variants, limit: int, epochs: int, rounds: int, seed: int) -> dict:
    """{variant: [child result of each round]}, the order reversed every other round."""
    runs: dict = {variant: [] for variant in variants}
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for variant in order:
            result = run_in_child(variant, limit, epochs, seed)
            runs[variant].append(result)
            print(f"round {round_index + 1} {variant}: first {result['wall'][0]:.1f} s, "
                  f"then {' '.join(f'{s:.2f}' for s in result['wall'][1:])} s",
                  file=sys.stderr, flush=True)
    return runs


def summarize(runs: dict, baseline: str) -> dict:
    """Per variant: every round's first and steady epoch (wall, CPU), their medians, the
    steady epoch over the baseline's of the same round, and 10 full epochs' estimate."""
    summary = {}
    for variant, results in runs.items():
        rounds = [{"first": r["wall"][0], "steady": statistics.median(r["wall"][1:]),
                   "cpu_first": r["cpu"][0], "cpu_steady": statistics.median(r["cpu"][1:]),
                   "valid_mse": r["valid_mse"]} for r in results]
        for index, row in enumerate(rounds):
            base = runs[baseline][index]
            row["steady_ratio"] = row["steady"] / statistics.median(base["wall"][1:])
            row["cpu_steady_ratio"] = row["cpu_steady"] / statistics.median(base["cpu"][1:])
        medians = {key: statistics.median(row[key] for row in rounds) for key in rounds[0]}
        scale = FULL_TRAIN_IMAGES / results[0]["train_images"]
        for prefix in ("", "cpu_"):
            overhead = medians[f"{prefix}first"] - medians[f"{prefix}steady"]
            medians[f"{prefix}full_{USER_EPOCHS}_epochs"] = (
                overhead + USER_EPOCHS * medians[f"{prefix}steady"] * scale)
        summary[variant] = {"rounds": rounds, "median": medians}
    return summary


def cells(rounds, key: str, digits: int) -> str:
    values = [row[key] for row in rounds]
    return (" / ".join(f"{value:.{digits}f}" for value in values)
            + f" (**{statistics.median(values):.{digits}f}**)")


def to_markdown(report: dict) -> str:
    """The report, from the results file alone."""
    protocol, summary = report["protocol"], report["summary"]
    baseline = protocol["baseline"]
    lines = [
        "# Recurrent autoencoder: unrolled LSTMs and XLA", "",
        stamp_line(report["machine"]), "",
        f"The default recipe on {protocol['train_images']:,} training images, "
        f"{protocol['epochs']} epochs per process, {protocol['rounds']} "
        f"round{'s' if protocol['rounds'] > 1 else ''} of every variant (order reversed "
        f"every other round), persistent XLA cache off. Each cell: "
        f"every round, then the median in bold. Steady: the median of epochs 2 to "
        f"{protocol['epochs']}. Ratio: the steady epoch over the {baseline} variant's in "
        f"the same round (< 1: faster). {USER_EPOCHS} full epochs: the first epoch's compile "
        f"overhead plus {USER_EPOCHS} steady epochs scaled to {FULL_TRAIN_IMAGES:,} images "
        f"(medians).", "",
        "| variant | unroll | XLA | first epoch, s | steady epoch, s | ratio | first epoch, "
        "CPU s | steady epoch, CPU s | CPU ratio | "
        f"{USER_EPOCHS} full epochs, s (CPU s) | validation MSE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, row in summary.items():
        unroll, xla = protocol["variants"][variant]
        rounds, median = row["rounds"], row["median"]
        lines.append(
            f"| {variant}{' (default)' if variant == protocol['default'] else ''} | "
            f"{'yes' if unroll else 'no'} | {'yes' if xla else 'no'} | "
            f"{cells(rounds, 'first', 1)} | {cells(rounds, 'steady', 2)} | "
            f"{cells(rounds, 'steady_ratio', 2)} | {cells(rounds, 'cpu_first', 1)} | "
            f"{cells(rounds, 'cpu_steady', 2)} | {cells(rounds, 'cpu_steady_ratio', 2)} | "
            f"{median[f'full_{USER_EPOCHS}_epochs']:.0f} "
            f"({median[f'cpu_full_{USER_EPOCHS}_epochs']:.0f}) | "
            f"{cells(rounds, 'valid_mse', 7)} |")
    return "\n".join(lines) + "\n"


def default_variant() -> str:
    """The variant that the family trains by default (``jit_compile`` unset)."""
    from hml_vae import families
    from hml_vae.families import recurrent

    wanted = (recurrent.UNROLL, families.get("recurrent").xla)
    return next(name for name, levers in VARIANTS.items() if levers == wanted)


def results_stem(args) -> str:
    """recurrent_levers, named after what differs from the full protocol's variants."""
    if args.quick:
        return "recurrent_levers_quick"
    if args.variants == list(FULL_VARIANTS):
        return "recurrent_levers"
    return "_".join(["recurrent_levers", *args.variants])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run (256 images, 2 epochs, 1 round, the family's "
                        "default variant) that checks the benchmark works")
    parser.add_argument("--limit", type=int, default=6000, help="training images")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS,
                        help=f"default: {' '.join(FULL_VARIANTS)} (--quick: the family's "
                        "default)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.limit, args.epochs, args.seed)))
        return 0
    if args.quick:
        args.limit, args.epochs, args.rounds = 256, 2, 1
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first compiles, the others are steady")
    machine = describe_machine()
    default = default_variant()
    args.variants = args.variants or ([default] if args.quick else list(FULL_VARIANTS))
    baseline = default if default in args.variants else args.variants[0]
    started = time.perf_counter()
    runs = measure(args.variants, args.limit, args.epochs, args.rounds, args.seed)
    report = {
        "machine": finished(machine),
        "protocol": {"train_images": runs[baseline][0]["train_images"], "limit": args.limit,
                     "epochs": args.epochs, "rounds": args.rounds, "seed": args.seed,
                     "preset": "default", "compile_cache": "off", "baseline": baseline,
                     "default": default, "variants": {v: VARIANTS[v] for v in args.variants},
                     "seconds": time.perf_counter() - started},
        "summary": summarize(runs, baseline),
        "runs": runs,
    }
    write_results(args.results_dir, results_stem(args), report, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
