"""Training throughput of hml_vae's dense VAE against a PyTorch implementation of the
PyTorch examples' VAE recipe, on the same machine, in one run.

    .venv/bin/pip install -r benchmarks/requirements.txt   # torch, CPU build
    .venv/bin/python benchmarks/throughput.py                # about 8 minutes on 2 cores
    .venv/bin/python benchmarks/throughput.py --epochs 2 --rounds 1 --limit 2048 \
        --results-dir /tmp/throughput                       # smoke

The recipe (both sides): 784-400-20 MLP, ReLU, Bernoulli decoder trained with binary
cross-entropy summed over pixels on gray Fashion-MNIST pixels (as the recipe does), Adam
1e-3, batch 128, the 55,000 HOML training images held in memory. Each round trains a fresh
model of each implementation for ``--epochs`` epochs, alternating which goes first, each
run in a process of its own (TensorFlow's and PyTorch's thread pools never share one;
hml_vae's compile cache off, so every first epoch compiles). Every epoch of every round is
in the results file. Two speeds per implementation: steady state,
the median over every epoch 2.. of every round (epoch 1 pays for graph building and XLA
compilation), and counting the first epoch, the median over rounds of all the round's
images over all its seconds. Ratios of hml_vae to each other implementation are taken
round by round (neighbouring runs see the same load) and their median is reported.
Five implementations: hml_vae as ``scripts/train.py`` compiles it (XLA, 32 steps per
execution), the same without XLA, the same with Keras' default compile settings (no XLA,
1 step per execution), and PyTorch with batches sliced from an in-memory tensor or drawn
by a DataLoader (as the example does). The test number is −ELBO on gray pixels (a loss,
not a likelihood: the pixels are not binary), in nats per image, after the same epochs.

Also measured: the FLOPs the training step runs per image, and the machine's float32
matrix-multiply peak in TensorFlow (the best of several runs over the step's own GEMM
shapes and a large square one), so the FLOP/s achieved is a fraction of that peak.

Writes STEM.json and STEM.md to --results-dir (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

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
HIDDEN, LATENT, PIXELS, BATCH = 400, 20, 784, 128


def flops_per_image() -> float:
    """Training FLOPs per image that the step's matrix multiplies run (2 FLOPs a
    multiply-add; elementwise work, the loss and Adam are left out).

    Each dense layer runs one forward multiply (x @ W) and in backprop the weight gradient
    (xᵀ @ dy) and the input gradient (dy @ Wᵀ), except the first layer: its input is the
    data, so its input gradient is never computed. Multiply-adds per image of one pass:
        encoder 784·400 = 313,600   mean and log-variance 2 · 400·20 = 16,000
        decoder 20·400 = 8,000      output 400·784 = 313,600    sum 651,200
    3 multiplies per layer: 3 · 651,200 = 1,953,600, minus the first layer's input
    gradient 313,600 = 1,640,000 multiply-adds = 3.28 MFLOP per image.
    """
    layers = [PIXELS * HIDDEN, 2 * HIDDEN * LATENT, LATENT * HIDDEN, HIDDEN * PIXELS]
    multiply_adds = 3 * sum(layers) - layers[0]
    return 2 * multiply_adds


# The step's large GEMMs (batch 128), as (name, a shape, b shape, transpose_a,
# transpose_b), and a large square one. The small ones (400×20, 20×400) run far below peak
# and take 2 % of the FLOPs.
STEP_GEMMS = (
    ("encoder forward x @ W1", (BATCH, PIXELS), (PIXELS, HIDDEN), False, False),
    ("encoder weight gradient xᵀ @ dh", (BATCH, PIXELS), (BATCH, HIDDEN), True, False),
    ("decoder forward h @ W4", (BATCH, HIDDEN), (HIDDEN, PIXELS), False, False),
    ("decoder weight gradient hᵀ @ dlogits", (BATCH, HIDDEN), (BATCH, PIXELS), True, False),
    ("decoder input gradient dlogits @ W4ᵀ", (BATCH, PIXELS), (HIDDEN, PIXELS), False, True),
)


def gemm_flops(a_shape, b_shape, transpose_a: bool, transpose_b: bool) -> int:
    m, k = a_shape[::-1] if transpose_a else a_shape
    n = b_shape[0] if transpose_b else b_shape[1]
    return 2 * m * k * n


def multiply_pairs(pairs, transpose_a: bool, transpose_b: bool) -> list:
    import tensorflow as tf

    return [tf.linalg.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
            for a, b in pairs]


PEAK_MODES = ("tf", "xla")


def matmul_peak(square: int = 2048, repeats: int = 5, copies: int = 16,
                modes=PEAK_MODES) -> dict:
    """Float32 matrix-multiply FLOP/s in TensorFlow, per GEMM shape: the best of
    ``repeats`` runs, each a ``tf.function`` (with and without XLA) of ``copies``
    independent multiplies of distinct random inputs (so that per-call overhead is shared
    and nothing is computed once for all). ``peak_flops`` is the best over every shape."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shapes = [*STEP_GEMMS, (f"square {square}²", (square, square), (square, square), False,
                            False)]
    measured = {}
    for name, a_shape, b_shape, transpose_a, transpose_b in shapes:
        count = max(2, copies // 8) if name.startswith("square") else copies
        inputs = [(tf.constant(rng.random(a_shape, dtype=np.float32)),
                   tf.constant(rng.random(b_shape, dtype=np.float32))) for _ in range(count)]
        flops = count * gemm_flops(a_shape, b_shape, transpose_a, transpose_b)
        best = {}
        for jit_compile in (mode == "xla" for mode in modes):
            multiply = tf.function(functools.partial(
                multiply_pairs, transpose_a=transpose_a, transpose_b=transpose_b),
                jit_compile=jit_compile)
            multiply(inputs)  # trace, compile, warm the threads
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                multiply(inputs)
                seconds.append(time.perf_counter() - started)
            best["xla" if jit_compile else "tf"] = flops / min(seconds)
        measured[name] = {"gflops_by_run_best": {key: value / 1e9 for key, value in best.items()},
                          "flops": max(best.values())}
    return {"peak_flops": max(row["flops"] for row in measured.values()),
            "by_shape": measured, "repeats": repeats}


def best_of(before: dict, after: dict) -> dict:
    """The peak measured before and after the training rounds: per shape and mode the
    better of both (the load of a shared machine changes during a run)."""
    by_shape = {name: {"gflops_by_run_best": {
        mode: max(gflops, after["by_shape"][name]["gflops_by_run_best"][mode])
        for mode, gflops in row["gflops_by_run_best"].items()},
        "flops": max(row["flops"], after["by_shape"][name]["flops"])}
        for name, row in before["by_shape"].items()}
    return {"peak_flops": max(before["peak_flops"], after["peak_flops"]),
            "by_shape": by_shape, "repeats": before["repeats"] + after["repeats"],
            "peak_flops_before": before["peak_flops"], "peak_flops_after": after["peak_flops"]}


# hml_vae's variants: its defaults, and with its speed settings turned off one by one.
KERAS_VARIANTS = {
    "hml_vae": {},
    "hml_vae_no_xla": {"jit_compile": False},
    "hml_vae_keras_defaults": {"steps_per_execution": 1, "jit_compile": False},
}


def run_keras(train, test, epochs: int, seed: int, speed: dict) -> dict:
    """hml_vae's dense VAE as ``scripts/train.py`` builds and compiles it, with the config
    overrides ``speed`` (see KERAS_VARIANTS)."""
    import keras

    from hml_vae.config import make_config
    from hml_vae.evaluation import likelihood_terms
    from hml_vae.training import TrainingPipeline, build_and_compile, fit_arguments, speed_options

    # The PyTorch recipe's Bernoulli decoder on gray pixels (the vae family's default
    # preset is the book's Gaussian one).
    config = make_config("vae", "bernoulli", hidden=(HIDDEN,), latent_dim=LATENT,
                         optimizer="adam", learning_rate=1e-3, batch_size=128, seed=seed,
                         binarize="none", **speed).for_images(train.shape[1:])
    keras.utils.set_random_seed(seed)
    models = build_and_compile(config)
    # As train.py trains: full batches only, so each epoch trains on 429 × 128 images.
    pipeline = TrainingPipeline.of_arrays(train, 128, seed)
    timer = epoch_timer()
    models.whole.fit(**fit_arguments(models.whole, pipeline, callbacks=[timer]),
                     epochs=epochs, verbose=0, shuffle=False)
    terms = likelihood_terms(models, test, iwae_samples=1, seed=seed)
    return {"epoch_seconds": timer.wall, "images_per_epoch": len(train) // 128 * 128,
            "test_neg_elbo_gray": float(np.mean(terms["neg_elbo"])),
            "jit_compile": speed_options(config)["jit_compile"],
            "steps_per_execution": models.whole.steps_per_execution}  # as fit ran it


# --- PyTorch reference ----------------------------------------------------------------------


def run_torch(train, test, epochs: int, seed: int, loader: bool = False) -> dict:
    """The reference in PyTorch: batches sliced from one in-memory tensor, or (``loader``)
    drawn by a ``DataLoader`` over a ``TensorDataset`` as the PyTorch example does."""
    import torch
    from torch import nn
    from torch.nn import functional

    torch.manual_seed(seed)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(PIXELS, HIDDEN)
            self.mean = nn.Linear(HIDDEN, LATENT)
            self.log_var = nn.Linear(HIDDEN, LATENT)
            self.decoder_hidden = nn.Linear(LATENT, HIDDEN)
            self.decoder_out = nn.Linear(HIDDEN, PIXELS)

        def forward(self, x):
            h = functional.relu(self.hidden(x))
            mean, log_var = self.mean(h), self.log_var(h)
            z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            logits = self.decoder_out(functional.relu(self.decoder_hidden(z)))
            return logits, mean, log_var

    def neg_elbo(logits, x, mean, log_var):
        reconstruction = functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
        return reconstruction + kl

    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.from_numpy(train.reshape(len(train), PIXELS))
    generator = torch.Generator().manual_seed(seed)
    times = []
    model.train()
    def in_memory_batches():
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), 128):
            yield images[order[start : start + 128]]

    data_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images), batch_size=128, shuffle=True,
        generator=generator)

    for _ in range(epochs):
        started = time.perf_counter()
        batches = (batch for (batch,) in data_loader) if loader else in_memory_batches()
        for batch in batches:
            optimizer.zero_grad()
            logits, mean, log_var = model(batch)
            loss = neg_elbo(logits, batch, mean, log_var) / len(batch)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(test.reshape(len(test), PIXELS))
        logits, mean, log_var = model(x)
        test_loss = float(neg_elbo(logits, x, mean, log_var)) / len(test)
    return {"epoch_seconds": times, "images_per_epoch": len(images),
            "test_neg_elbo_gray": test_loss,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


# --- The run ------------------------------------------------------------------------------

IMPLEMENTATIONS = (*KERAS_VARIANTS, "torch", "torch_dataloader")


def run_one(name: str, epochs: int, seed: int, limit: int | None) -> dict:
    """One run of implementation ``name`` in this process."""
    from hml_vae.data import load_dataset

    data = load_dataset("fashion_mnist", limit=limit)
    train, test = data.train.images, data.test.images
    if name.startswith("torch"):
        return run_torch(train, test, epochs, seed, loader=name == "torch_dataloader")
    return run_keras(train, test, epochs, seed, KERAS_VARIANTS[name])


def run_in_child(name: str, epochs: int, seed: int, limit: int | None) -> dict:
    return run_child(__file__, ["--child", name, "--epochs", str(epochs), "--seed", str(seed)]
                     + ([] if limit is None else ["--limit", str(limit)]),
                     HML_VAE_COMPILE_CACHE="off")


def steady_images_per_second(result: dict) -> list[float]:
    """Images per second of every epoch but the first (graph building, compilation)."""
    return [result["images_per_epoch"] / seconds for seconds in result["epoch_seconds"][1:]]


def images_per_second_with_first(result: dict) -> float:
    """The round's images over all its seconds, the first (compiling) epoch included."""
    seconds = result["epoch_seconds"]
    return result["images_per_epoch"] * len(seconds) / sum(seconds)


def summarize(runs: dict, flops: float, peak: float) -> tuple[dict, dict]:
    """Per implementation: steady-state images/s (median of every timed epoch of every
    round), the same counting the first epoch (median over rounds), FLOP/s and test loss;
    per other implementation: hml_vae's speed over it, round by round and their median."""
    summary = {}
    for name, results in runs.items():
        steady = statistics.median(
            speed for result in results for speed in steady_images_per_second(result))
        summary[name] = {
            "images_per_second": steady,
            "images_per_second_by_round": [statistics.median(steady_images_per_second(r))
                                           for r in results],
            "images_per_second_with_first_epoch": statistics.median(
                images_per_second_with_first(r) for r in results),
            "seconds_per_55000_images": 55_000 / steady,
            "achieved_flops": steady * flops,
            "fraction_of_peak": steady * flops / peak,
            "test_neg_elbo_gray": statistics.median(r["test_neg_elbo_gray"] for r in results),
            "test_neg_elbo_gray_by_round": [r["test_neg_elbo_gray"] for r in results],
        }
    ratios = {}
    if "hml_vae" in runs:
        for name in runs:
            if name == "hml_vae":
                continue
            pairs = list(zip(runs["hml_vae"], runs[name], strict=True))
            steady = [statistics.median(steady_images_per_second(mine))
                      / statistics.median(steady_images_per_second(theirs))
                      for mine, theirs in pairs]
            with_first = [images_per_second_with_first(mine)
                          / images_per_second_with_first(theirs) for mine, theirs in pairs]
            ratios[name] = {"steady_by_round": steady, "steady": statistics.median(steady),
                            "with_first_epoch_by_round": with_first,
                            "with_first_epoch": statistics.median(with_first)}
    return summary, ratios


def to_markdown(report: dict) -> str:
    """The report, from the results file alone."""
    protocol, summary, peak = report["protocol"], report["summary"], report["matmul_peak"]
    rounds = protocol["rounds"]
    lines = [
        "# Training throughput: dense VAE 784-400-20, batch 128", "",
        stamp_line(report["machine"]), "",
        f"{protocol['train_images']:,} training images, {protocol['epochs']} epochs × "
        f"{rounds} rounds, implementations alternating. Steady state: median of every "
        f"epoch 2.. of every round; with the first epoch: median over rounds of (images / "
        f"seconds) over all epochs. FLOPs the step runs: "
        f"{protocol['flops_per_image'] / 1e6:.2f} MFLOP per image. Matrix-multiply peak "
        f"(TensorFlow float32, best of {peak['repeats']} runs before and after the training "
        f"over the step's GEMM shapes and a square one, with and without XLA): "
        f"**{peak['peak_flops'] / 1e9:.1f} GFLOP/s** (best before "
        f"{peak['peak_flops_before'] / 1e9:.1f}, after {peak['peak_flops_after'] / 1e9:.1f}).",
        "",
        "| implementation | images/s per round (steady) | median images/s (steady) | "
        "s per 55,000 images | images/s with the first epoch | GFLOP/s | % of peak | "
        "test −ELBO, gray pixels (nats/image, a loss) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | " + " / ".join(f"{speed:,.0f}" for speed in
                                       row["images_per_second_by_round"])
            + f" | {row['images_per_second']:,.0f} | {row['seconds_per_55000_images']:.2f} | "
            f"{row['images_per_second_with_first_epoch']:,.0f} | "
            f"{row['achieved_flops'] / 1e9:.1f} | {100 * row['fraction_of_peak']:.0f} % | "
            f"{row['test_neg_elbo_gray']:.2f} |")
    if report["not_run"]:
        lines += ["", "Not run: " + "; ".join(f"{name} ({why})" for name, why
                                            in report["not_run"].items())]
    if report["ratios"]:
        lines += ["", "hml_vae's speed over each implementation, per round and the median:", "",
                  "| over | steady, per round | steady, median | with the first epoch, "
                  "per round | with the first epoch, median |", "|---|---|---|---|---|"]
        for name, ratio in report["ratios"].items():
            lines.append(
                f"| {name} | " + " / ".join(f"{value:.2f}×" for value in
                                           ratio["steady_by_round"])
                + f" | **{ratio['steady']:.2f}×** | "
                + " / ".join(f"{value:.2f}×" for value in ratio["with_first_epoch_by_round"])
                + f" | {ratio['with_first_epoch']:.2f}× |")
    lines += ["", "Matrix-multiply GFLOP/s by shape (best run; "
              + " / ".join(next(iter(peak["by_shape"].values()))["gflops_by_run_best"]) + "):", ""]
    lines += [f"- {name}: " + " / ".join(f"{value:.1f}" for value in
                                        row["gflops_by_run_best"].values())
              for name, row in peak["by_shape"].items()]
    return "\n".join(lines) + "\n"


def torch_missing() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed: pip install -r benchmarks/requirements.txt"
    return None


def main(argv=None) -> int:
    from hml_vae import cli

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=cli.positive_int, default=4)
    parser.add_argument("--rounds", type=cli.positive_int, default=4)
    parser.add_argument("--limit", type=cli.positive_int,
                        help="train on the first N images (smoke runs)")
    parser.add_argument("--implementations", type=cli.name_list(IMPLEMENTATIONS,
                                                                 "implementations"),
                        default=IMPLEMENTATIONS)
    parser.add_argument("--without-torch-if-missing", action="store_true",
                        help="leave the PyTorch implementations out, saying so in the "
                        "report, when torch is not installed (quick runs)")
    parser.add_argument("--peak-size", type=cli.positive_int, default=2048,
                        help="side of the square matrix multiply of the peak")
    parser.add_argument("--peak-repeats", type=cli.positive_int, default=5)
    parser.add_argument("--peak-modes", type=cli.name_list(PEAK_MODES, "peak modes"),
                        default=PEAK_MODES, help="matmuls of the peak in plain TF and/or XLA")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one run, its result as JSON on stdout
        print(json.dumps(run_one(args.child, args.epochs, args.seed, args.limit)))
        return 0
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is not steady state")

    implementations, not_run = list(args.implementations), {}
    missing = torch_missing() if any(name.startswith("torch") for name in implementations) \
        else None
    if missing and not args.without_torch_if_missing:
        raise SystemExit(f"error: {missing} (or pass --implementations without torch)")
    if missing:
        not_run = {name: missing for name in implementations if name.startswith("torch")}
        implementations = [name for name in implementations if name not in not_run]

    machine = describe_machine()
    from hml_vae.data import load_dataset

    data = load_dataset("fashion_mnist", limit=args.limit)
    train, test = data.train.images, data.test.images
    peak_before = matmul_peak(args.peak_size, args.peak_repeats, modes=args.peak_modes)
    runs: dict[str, list] = {name: [] for name in implementations}
    for round_index in range(args.rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for name in order:
            result = run_in_child(name, args.epochs, round_index, args.limit)
            runs[name].append(result)
            print(f"round {round_index + 1} {name}: "
                  f"{statistics.median(steady_images_per_second(result)):,.0f} images/s, "
                  f"test -ELBO (gray) {result['test_neg_elbo_gray']:.2f}", flush=True)

    peak = best_of(peak_before, matmul_peak(args.peak_size, args.peak_repeats,
                                            modes=args.peak_modes))
    summary, ratios = summarize(runs, flops_per_image(), peak["peak_flops"])
    report = {
        "machine": finished(machine),
        "protocol": {"epochs": args.epochs, "rounds": args.rounds, "train_images": len(train),
                     "test_images": len(test), "batch_size": BATCH,
                     "flops_per_image": flops_per_image(), "timed_epochs": "2.."},
        "matmul_peak": peak,
        "summary": summary,
        "ratios": ratios,
        "not_run": not_run,
        "runs": runs,
    }
    stem = "throughput" if args.limit is None else f"throughput_limit{args.limit}"
    write_results(args.results_dir, stem, report, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
