"""Training throughput of hml_vae's dense VAE against a PyTorch implementation of the
PyTorch examples' VAE recipe, on the same machine, in one run.

    .venv/bin/pip install -r benchmarks/requirements.txt   # torch, CPU build
    .venv/bin/python benchmarks/throughput.py                # about 8 minutes on 2 cores
    .venv/bin/python benchmarks/throughput.py --epochs 3 --rounds 1 --limit 10000  # smoke

The recipe (both sides): 784-400-20 MLP, ReLU, Bernoulli decoder trained with binary
cross-entropy summed over pixels on gray Fashion-MNIST pixels (as the recipe does), Adam
1e-3, batch 128, the 55,000 HOML training images held in memory. Each round trains a fresh
model of each framework for ``--epochs`` epochs, alternating which goes first; throughput
is images per second over epochs 2.. (the first epoch pays for graph building and XLA
compilation), medians over rounds. Five implementations: hml_vae as ``scripts/train.py``
compiles it (XLA, 32 steps per execution), the same without XLA, the same with Keras'
default compile settings (no XLA, 1 step per execution), and PyTorch with batches sliced
from an in-memory tensor or drawn by a DataLoader (as the example does). The test number
is −ELBO on gray pixels (a loss, not a
likelihood: the pixels are not binary), in nats per image, after the same epochs.

Also measured here: the machine's single-precision matrix-multiply peak (NumPy, 2048²
matrices, median of repeats) and the FLOP/s the hml_vae step achieves against it.

Writes benchmarks/results/throughput.json and throughput.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe_machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HIDDEN, LATENT, PIXELS = 400, 20, 784


def flops_per_image() -> float:
    """Training FLOPs per image: the forward matrix multiplies (2 FLOPs a multiply-add)
    times 3 for forward + backward (gradients for inputs and weights)."""
    multiply_adds = PIXELS * HIDDEN + HIDDEN * 2 * LATENT + LATENT * HIDDEN + HIDDEN * PIXELS
    return 3 * 2 * multiply_adds


def matmul_peak(size: int = 2048, repeats: int = 7) -> float:
    """Median FLOP/s of a float32 NumPy matrix multiply of ``size``² matrices."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times)


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
    from hml_vae.data import make_pipeline
    from hml_vae.evaluation import likelihood_terms
    from hml_vae.training import build_and_compile, fit_arguments, speed_options

    config = make_config("vae", hidden=(HIDDEN,), latent_dim=LATENT, optimizer="adam",
                         learning_rate=1e-3, batch_size=128, seed=seed, binarize="none",
                         **speed)
    keras.utils.set_random_seed(seed)
    models = build_and_compile(config)
    # As train.py trains: full batches only, so each epoch trains on 429 × 128 images.
    pipeline = make_pipeline(train, 128, shuffle=True, seed=seed, full_batches=True)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    models.whole.fit(**fit_arguments(models.whole, pipeline), epochs=epochs, verbose=0,
                     callbacks=[Timer()], shuffle=False)
    terms = likelihood_terms(models, test, iwae_samples=1, seed=seed)
    return {"epoch_seconds": times, "images_per_epoch": len(train) // 128 * 128,
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


def images_per_second(result: dict) -> float:
    return result["images_per_epoch"] / statistics.median(result["epoch_seconds"][1:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--limit", type=int, help="train on the first N images (smoke runs)")
    args = parser.parse_args(argv)

    from hml_vae.data import load_dataset

    data = load_dataset("fashion_mnist", limit=args.limit)
    train, test = data.train.images, data.test.images
    peak = matmul_peak()
    runs: dict[str, list] = {name: [] for name in (*KERAS_VARIANTS, "torch",
                                                   "torch_dataloader")}
    for round_index in range(args.rounds):
        order = list(runs)
        if round_index % 2:
            order.reverse()
        for name in order:
            if name.startswith("torch"):
                result = run_torch(train, test, args.epochs, round_index,
                                   loader=name == "torch_dataloader")
            else:
                result = run_keras(train, test, args.epochs, round_index, KERAS_VARIANTS[name])
            runs[name].append(result)
            print(f"round {round_index + 1} {name}: "
                  f"{images_per_second(result):,.0f} images/s, "
                  f"test -ELBO (gray) {result['test_neg_elbo_gray']:.2f}", flush=True)

    summary = {}
    for name, results in runs.items():
        speed = statistics.median(images_per_second(result) for result in results)
        summary[name] = {
            "images_per_second": speed,
            "epoch_seconds": len(train) / speed,
            "achieved_flops": speed * flops_per_image(),
            "fraction_of_peak": speed * flops_per_image() / peak,
            "test_neg_elbo_gray": statistics.median(r["test_neg_elbo_gray"] for r in results),
        }
    ratios = {name: summary["hml_vae"]["images_per_second"] / summary[name]["images_per_second"]
              for name in runs if name != "hml_vae"}
    # The same ratio within each round (neighbouring runs): how much the machine's speed
    # drifted between rounds shows in their spread.
    round_ratios = {name: [images_per_second(mine) / images_per_second(theirs)
                           for mine, theirs in zip(runs["hml_vae"], runs[name], strict=True)]
                    for name in ratios}
    report = {
        "machine": describe_machine(),
        "protocol": {"epochs": args.epochs, "rounds": args.rounds, "train_images": len(train),
                     "test_images": len(test), "batch_size": 128,
                     "flops_per_image": flops_per_image(), "timed_epochs": "2.."},
        "matmul_peak_flops": peak,
        "summary": summary,
        "speed_ratios_of_hml_vae": ratios,
        "speed_ratios_of_hml_vae_per_round": round_ratios,
        "runs": runs,
    }
    suffix = "" if args.limit is None else f"_limit{args.limit}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"throughput{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Training throughput: dense VAE 784-400-20, batch 128", "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} cores. "
        f"Matrix-multiply peak (NumPy float32 2048²): {peak / 1e9:.1f} GFLOP/s. "
        f"{len(train):,} training images, {args.epochs} epochs × {args.rounds} rounds, "
        f"medians over epochs 2.. and rounds.", "",
        "| implementation | images/s | s per 55,000 images | GFLOP/s | % of peak "
        "| test −ELBO, gray pixels (nats/image, a loss) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['images_per_second']:,.0f} | {row['epoch_seconds']:.2f} | "
            f"{row['achieved_flops'] / 1e9:.1f} | {100 * row['fraction_of_peak']:.0f} % | "
            f"{row['test_neg_elbo_gray']:.2f} |")
    lines += ["", "hml_vae's images/s over: " + ", ".join(
        f"{name} **{ratio:.2f}×**" for name, ratio in ratios.items()), "",
        "Per round (" + " / ".join(str(index + 1) for index in range(args.rounds)) + "): "
        + "; ".join(f"{name} " + " / ".join(f"{ratio:.2f}×" for ratio in values)
                    for name, values in round_ratios.items()), ""]
    (RESULTS / f"throughput{suffix}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
