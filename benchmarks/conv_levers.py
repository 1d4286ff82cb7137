"""What makes the conv family's training slower or faster than a plain PyTorch loop of the
same layers: each speed lever measured against hml_vae's default, and each layer's
forward + backward pass timed alone in TensorFlow and in PyTorch.

    .venv/bin/python benchmarks/conv_levers.py --op-profile     # 5 variants: ~8 min
    .venv/bin/python benchmarks/conv_levers.py --quick          # under a minute: a smoke run
    .venv/bin/python benchmarks/conv_levers.py --profile-steps 20 --variants default torch

Every variant trains the book's recipe (``make_config("conv", "default")``: batch 32,
Nadam 1e-3) for ``--epochs`` epochs on the first ``--limit`` training images, in a fresh
child process of its own (oneDNN is configured from the environment when TensorFlow is
imported, and PyTorch's and TensorFlow's thread pools slow each other down when they share
a process). The variants run alternating, their order reversed every other round.

Variants (the first five by default): ``default`` (as ``scripts/train.py`` trains),
``xla`` (``jit_compile=True``), ``steps_1`` (``steps_per_execution=1``), ``onednn_off``
(``TF_ENABLE_ONEDNN_OPTS=0``),
``inter_op_1`` (``TF_NUM_INTEROP_THREADS=1``: one thread runs the graph's ops, each op
still using the intra-op threads), ``batch_128`` (information only: the recipe's batch
is 32) and ``torch`` (benchmarks/torch_mirrors.py's ``ConvAutoencoder``).
Reported per variant and round: seconds of every epoch, CPU seconds of the whole fit, and
its speed over the default's in the same round, steady (median epoch 2..) and counting the
first (compiling) epoch as a 10-epoch run would (first + 9 steady epochs); medians over
the rounds.

The layer profile (``--profile-steps`` N > 0) times each layer's forward and backward pass
at batch 32 (gradients of the inputs and weights of ``sum(y²)``), alternating a TensorFlow
and a PyTorch child. ``--op-profile`` adds TensorFlow's profile of the default's training
step inside ``fit``: op time per step by op type and by layer (forward or backward).

Writes conv_levers.json and .md (``--quick``: conv_levers_quick) to --results-dir.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from importlib.util import find_spec
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
BOOK_EPOCHS = 10
# variant -> (config overrides, environment of its process)
VARIANTS = {
    "default": ({}, {}),
    "xla": ({"jit_compile": True}, {}),
    "steps_1": ({"steps_per_execution": 1}, {}),
    "onednn_off": ({}, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "inter_op_1": ({}, {"TF_NUM_INTEROP_THREADS": "1"}),
    "batch_128": ({"batch_size": 128}, {}),
    "torch": ({}, {}),
}
DEFAULT_VARIANTS = ("default", "xla", "steps_1", "onednn_off", "inter_op_1")
BATCH = 32


# --- Children: one variant's training run ------------------------------------------------


def compiled_recipe(overrides: dict, limit: int, epochs: int, seed: int):
    """(config, compiled models, training data, training steps per epoch) of the
    book's recipe as ``scripts/train.py`` builds it, with ``overrides``."""
    import keras

    from hml_vae.config import make_config
    from hml_vae.data import load_dataset
    from hml_vae.training import build_and_compile, make_training_data

    data = load_dataset("fashion_mnist", limit=limit)
    config = make_config("conv", "default", epochs=epochs, seed=seed,
                         **overrides).for_images(data.image_shape)
    keras.utils.set_random_seed(seed)
    models = build_and_compile(config)
    train, _ = make_training_data(config, data)
    return config, models, train, train.steps


def train_keras(overrides: dict, limit: int, epochs: int, seed: int) -> dict:

    from hml_vae.training import fit_arguments

    config, models, train, steps = compiled_recipe(overrides, limit, epochs, seed)
    timer = epoch_timer()
    cpu = time.process_time()
    models.whole.fit(**fit_arguments(models.whole, train, callbacks=[timer]), epochs=epochs,
                     verbose=0, shuffle=False)
    return {"epoch_seconds": timer.wall, "cpu_seconds": time.process_time() - cpu,
            "images_per_epoch": steps * config.batch_size,
            "steps_per_execution": int(models.whole.steps_per_execution)}


# The layers of build_conv, found in the names of the ops TensorFlow runs for them.
LAYER_NAMES = re.compile(r"(encoder_conv_\d+|encoder_pool_\d+|coding_conv|coding|"
                         r"decoder_dense|decoder_conv_transpose_\d+)")


def op_profile(limit: int, seed: int) -> dict:
    """Microseconds per training step of the default's ops, by TensorFlow's profiler, over
    one epoch after a first (compiling) one: summed by op type and by layer and pass."""
    import tempfile

    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    from hml_vae.training import fit_arguments

    _, models, train, steps = compiled_recipe({}, limit, 2, seed)
    arguments = fit_arguments(models.whole, train)
    models.whole.fit(**arguments, epochs=1, verbose=0, shuffle=False)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        models.whole.fit(**arguments, epochs=1, verbose=0, shuffle=False)
        tf.profiler.experimental.stop()
        path = str(next(Path(logdir).rglob("*.xplane.pb")))
        table, _ = _pywrap_profiler_plugin.xspace_to_tools_data([path], "framework_op_stats")
    table = json.loads(table)[0]
    columns = [column["id"] for column in table["cols"]]
    by_type, by_layer = {}, {}
    for row in table["rows"]:
        op = dict(zip(columns, (cell.get("v") if cell else None for cell in row["c"]),
                      strict=True))
        if op["type"] == "IDLE":
            continue
        layer = LAYER_NAMES.search(op["operation"])
        key = (layer.group(1) if layer else "other") + (
            " (backward)" if "gradient_tape" in op["operation"] else "")
        microseconds = op["total_self_time"] / steps
        by_type[op["type"]] = by_type.get(op["type"], 0.0) + microseconds
        by_layer[key] = by_layer.get(key, 0.0) + microseconds
    return {"steps": steps, "by_type": by_type, "by_layer": by_layer}


def train_torch(limit: int, epochs: int, seed: int) -> dict:
    from benchmarks.vs_pytorch import run_torch
    from hml_vae.data import load_dataset

    data = load_dataset("fashion_mnist", limit=limit)
    cpu = time.process_time()
    result = run_torch("conv", data, epochs, seed)
    return {**result, "cpu_seconds": time.process_time() - cpu}


# --- Children: the layer profile ---------------------------------------------------------


def layer_specs():
    """(name, input shape (H, W, C) or (features,), Keras layer factory, PyTorch module
    factory) of every layer of the book's conv autoencoder on 28×28×1 images. The PyTorch
    factories need torch (benchmarks/requirements.txt); the Keras ones do not."""
    import keras

    try:
        from torch import nn
    except ImportError:  # only the PyTorch factories, called by the profile, need it
        nn = None

    def conv(channels, filters, size):
        return (f"Conv2D {channels}->{filters} at {size}", (size, size, channels),
                lambda: keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
                lambda: nn.Sequential(nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU()))

    def pool(channels, size):
        return (f"MaxPooling2D {channels}@{size}", (size, size, channels),
                lambda: keras.layers.MaxPooling2D(2), lambda: nn.MaxPool2d(2))

    def transpose(channels, filters, size, padding, relu=True):
        torch_padding = (0, 0) if padding == "valid" else (1, 1)
        return (f"Conv2DTranspose {channels}->{filters} from {size} ({padding})",
                (size, size, channels),
                lambda: keras.layers.Conv2DTranspose(filters, 3, strides=2, padding=padding,
                                                     activation="relu" if relu else None),
                lambda: nn.Sequential(
                    nn.ConvTranspose2d(channels, filters, 3, stride=2,
                                       padding=torch_padding[0],
                                       output_padding=torch_padding[1]),
                    *([nn.ReLU()] if relu else [])))

    return [
        conv(1, 16, 28), pool(16, 28), conv(16, 32, 14), pool(32, 14), conv(32, 64, 7),
        pool(64, 7), conv(64, 30, 3),
        ("GlobalAveragePooling2D 30@3", (3, 3, 30),
         keras.layers.GlobalAveragePooling2D, lambda: nn.AdaptiveAvgPool2d(1)),
        ("Dense 30->144", (30,), lambda: keras.layers.Dense(144), lambda: nn.Linear(30, 144)),
        transpose(16, 32, 3, "valid"), transpose(32, 16, 7, "same"),
        transpose(16, 1, 14, "same", relu=False),
    ]


def timed_steps(step, steps: int) -> dict:
    """Microseconds of wall and CPU time per call of ``step``, after two warm-up calls."""
    step()
    step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return {"wall_us": (time.perf_counter() - wall) / steps * 1e6,
            "cpu_us": (time.process_time() - cpu) / steps * 1e6}


def profile_tensorflow(steps: int) -> dict:
    import numpy as np
    import tensorflow as tf

    rows = {}
    for name, shape, make_layer, _ in layer_specs():
        layer = make_layer()
        x = tf.constant(np.random.default_rng(0).random((BATCH, *shape), dtype=np.float32))
        layer.build(x.shape)

        @tf.function
        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [x, *layer.trainable_variables])

        rows[name] = timed_steps(lambda x=x, step=step: step(x), steps)
    return rows


def profile_torch(steps: int) -> dict:
    import numpy as np
    import torch

    rows = {}
    for name, shape, _, make_module in layer_specs():
        module = make_module()
        x = np.random.default_rng(0).random((BATCH, *shape), dtype=np.float32)
        if len(shape) == 3:  # channels first
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        x = torch.from_numpy(x).requires_grad_()

        def step(x=x, module=module):
            module.zero_grad()
            x.grad = None
            y = module(x)
            (y * y).sum().backward()

        rows[name] = timed_steps(step, steps)
    return rows


def child(args) -> dict:
    if args.child == "profile_tensorflow":
        return profile_tensorflow(args.profile_steps)
    if args.child == "profile_torch":
        return profile_torch(args.profile_steps)
    if args.child == "op_profile":
        return op_profile(args.limit, args.seed)
    if args.child == "torch":
        return train_torch(args.limit, args.epochs, args.seed)
    return train_keras(VARIANTS[args.child][0], args.limit, args.epochs, args.seed)


def run_in_child(name: str, args, seed: int) -> dict:
    """Runs ``name`` in a fresh Python process; its result is the last line it prints."""
    return run_child(__file__, ["--child", name, "--limit", str(args.limit), "--epochs",
                                str(args.epochs), "--seed", str(seed), "--profile-steps",
                                str(args.profile_steps)],
                     **VARIANTS.get(name, ({}, {}))[1], TF_CPP_MIN_LOG_LEVEL="2")


# --- Summaries ---------------------------------------------------------------------------


def steady_seconds(run: dict) -> float:
    """Seconds of a steady epoch (median of epochs 2..) per image."""
    return statistics.median(run["epoch_seconds"][1:]) / run["images_per_epoch"]


def book_run_seconds(run: dict) -> float:
    """Seconds per image of a 10-epoch run: the first epoch + 9 steady ones."""
    seconds = run["epoch_seconds"][0] + (BOOK_EPOCHS - 1) * statistics.median(
        run["epoch_seconds"][1:])
    return seconds / (BOOK_EPOCHS * run["images_per_epoch"])


def cpu_per_image(run: dict) -> float:
    return run["cpu_seconds"] / (len(run["epoch_seconds"]) * run["images_per_epoch"])


def summarize_training(runs: dict) -> dict:
    """Per variant: speed over the default's run of the same round (steady, 10-epoch run,
    CPU), each round and the median."""
    summary = {}
    for name, rounds in runs.items():
        speedups = {
            "steady": [steady_seconds(base) / steady_seconds(run)
                       for base, run in zip(runs["default"], rounds, strict=True)],
            "book_run": [book_run_seconds(base) / book_run_seconds(run)
                         for base, run in zip(runs["default"], rounds, strict=True)],
            "cpu": [cpu_per_image(base) / cpu_per_image(run)
                    for base, run in zip(runs["default"], rounds, strict=True)],
        }
        summary[name] = {
            "first_epoch_seconds": [run["epoch_seconds"][0] for run in rounds],
            "steady_epoch_seconds": [statistics.median(run["epoch_seconds"][1:])
                                     for run in rounds],
            **{f"speedup_{key}": values for key, values in speedups.items()},
            **{f"median_speedup_{key}": statistics.median(values)
               for key, values in speedups.items()},
        }
    return summary


def summarize_profile(profiles: dict) -> dict:
    """Per layer: median wall and CPU microseconds per forward + backward step on each side,
    and TensorFlow's over PyTorch's."""
    rows = {}
    for layer in profiles["profile_tensorflow"][0]:
        row = {}
        for side, key in (("profile_tensorflow", "tensorflow"), ("profile_torch", "torch")):
            for unit in ("wall_us", "cpu_us"):
                row[f"{key}_{unit}"] = statistics.median(
                    rounds[layer][unit] for rounds in profiles[side])
        row["ratio_wall"] = row["tensorflow_wall_us"] / row["torch_wall_us"]
        row["ratio_cpu"] = row["tensorflow_cpu_us"] / row["torch_cpu_us"]
        rows[layer] = row
    return rows


def to_markdown(report: dict) -> str:
    protocol = report["protocol"]
    lines = [
        "# Conv family: speed levers and a layer profile",
        "",
        stamp_line(report["machine"]),
        "",
        f"The book's recipe (batch 32) on {protocol['limit']} training images, "
        f"{protocol['epochs']} epochs per run, {protocol['rounds']} rounds alternating, "
        "each run in a fresh process. Speed-ups are over the default's run in the same "
        "round (>1: faster), medians over the rounds with every round in brackets; "
        "'10-epoch run' counts the first (compiling) epoch as the book's 10 epochs would.",
        "",
        "| variant | first epoch s | steady epoch s | steady speed-up | 10-epoch run "
        "speed-up | CPU-time speed-up |",
        "|---|---|---|---|---|---|",
    ]

    def cell(values, digits=2):
        return ", ".join(f"{value:.{digits}f}" for value in values)

    for name, row in report["training"].items():
        lines.append(
            f"| {name} | {statistics.median(row['first_epoch_seconds']):.2f} | "
            f"{statistics.median(row['steady_epoch_seconds']):.2f} | "
            f"{row['median_speedup_steady']:.2f}× ({cell(row['speedup_steady'])}) | "
            f"{row['median_speedup_book_run']:.2f}× ({cell(row['speedup_book_run'])}) | "
            f"{row['median_speedup_cpu']:.2f}× ({cell(row['speedup_cpu'])}) |")
    if report["profile"]:
        lines += ["", *profile_table(report["profile"], protocol["profile_steps"])]
    if report.get("op_profile"):
        lines += ["", *op_profile_table(report["op_profile"])]
    return "\n".join(lines) + "\n"


def profile_table(profile: dict, steps: int) -> list[str]:
    """Markdown lines of the layer profile, with the sum over the layers."""
    lines = [
        f"Layer profile: forward + backward of each layer alone at batch {BATCH}, "
        f"{steps} steps per round, median over the rounds (microseconds per step).",
        "",
        "| layer | TF wall | torch wall | TF/torch wall | TF CPU | torch CPU | TF/torch CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for layer, row in profile.items():
        lines.append(
            f"| {layer} | {row['tensorflow_wall_us']:.0f} | {row['torch_wall_us']:.0f} | "
            f"{row['ratio_wall']:.2f} | {row['tensorflow_cpu_us']:.0f} | "
            f"{row['torch_cpu_us']:.0f} | {row['ratio_cpu']:.2f} |")
    totals = {key: sum(row[key] for row in profile.values())
              for key in ("tensorflow_wall_us", "torch_wall_us", "tensorflow_cpu_us",
                          "torch_cpu_us")}
    lines.append(
        f"| all layers | {totals['tensorflow_wall_us']:.0f} | {totals['torch_wall_us']:.0f} "
        f"| {totals['tensorflow_wall_us'] / totals['torch_wall_us']:.2f} | "
        f"{totals['tensorflow_cpu_us']:.0f} | {totals['torch_cpu_us']:.0f} | "
        f"{totals['tensorflow_cpu_us'] / totals['torch_cpu_us']:.2f} |")
    return lines


def op_profile_table(profile: dict, rows: int = 12) -> list[str]:
    """Markdown lines of the op profile: the costliest op types and layers."""
    busy = sum(profile["by_type"].values())
    lines = [f"Op profile of the default (TensorFlow's profiler, {profile['steps']} steps): "
             f"{busy:.0f} µs of op time per training step (summed over threads).", ""]
    for title, table in (("op type", profile["by_type"]), ("layer", profile["by_layer"])):
        lines += [f"| {title} | µs per step | share |", "|---|---|---|"]
        for name, microseconds in sorted(table.items(), key=lambda item: -item[1])[:rows]:
            lines.append(f"| {name} | {microseconds:.0f} | {microseconds / busy:.1%} |")
        lines.append("")
    return lines[:-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        choices=VARIANTS)
    parser.add_argument("--limit", type=int, default=2000, help="training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=0,
                        help="steps per layer of the layer profile (0: no profile)")
    parser.add_argument("--op-profile", action="store_true",
                        help="also profile the default's training step op by op (once)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="the default on 128 images, 2 epochs, 1 round, and a 3-step "
                        "layer profile where torch is installed: checks that it runs")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.quick:  # the layer profile compares with PyTorch: only where it is installed
        args.variants, args.limit, args.epochs, args.rounds, args.profile_steps = (
            ["default"], 128, 2, 1, 3 if find_spec("torch") else 0)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 compiles; steady state is 2..)")
    if (args.profile_steps or "torch" in args.variants) and find_spec("torch") is None:
        parser.error("torch is not installed: pip install -r benchmarks/requirements.txt, "
                     "or leave out the torch variant and the profile (--profile-steps 0)")
    variants = ["default", *(name for name in args.variants if name != "default")]

    machine = describe_machine()
    runs = {name: [] for name in variants}
    profiles = ({"profile_tensorflow": [], "profile_torch": []} if args.profile_steps
                else {})
    for round_index in range(args.rounds):
        order = [*variants, *profiles]
        if round_index % 2:
            order.reverse()
        for name in order:
            result = run_in_child(name, args, args.seed + round_index)
            (profiles if name in profiles else runs)[name].append(result)
            if name not in profiles:
                print(f"round {round_index + 1} {name}: epochs "
                      f"{[round(seconds, 2) for seconds in result['epoch_seconds']]} s, "
                      f"CPU {result['cpu_seconds']:.1f} s", flush=True)
    report = {
        "machine": finished(machine),
        "protocol": {"limit": args.limit, "epochs": args.epochs, "rounds": args.rounds,
                     "profile_steps": args.profile_steps, "variants": variants,
                     "environments": {name: VARIANTS[name][1] for name in variants}},
        "training": summarize_training(runs),
        "profile": summarize_profile(profiles) if profiles else {},
        "op_profile": run_in_child("op_profile", args, args.seed) if args.op_profile else {},
        "runs": runs,
        "profiles": profiles,
    }
    stem = "conv_levers_quick" if args.quick else "conv_levers"
    write_results(args.results_dir, stem, report, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
