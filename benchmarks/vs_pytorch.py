"""Each family's book recipe trained by hml_vae and by a plain PyTorch loop of the same
recipe, on the same machine, alternating, in one run.

    .venv/bin/python benchmarks/vs_pytorch.py                       # the full comparison
    .venv/bin/python benchmarks/vs_pytorch.py --quick               # seconds: a smoke run
    .venv/bin/python benchmarks/vs_pytorch.py --families vae conv --epochs 3 --rounds 3

Both sides take the recipe from ``make_config(family, "default")``: layer sizes, batch size,
optimizer and learning rate; the PyTorch modules mirror hml_vae's layers (same sizes,
activations, linear outputs, the VAE's likelihood and binarization as the recipe resolves
them for the images).
Each round trains a fresh model of every implementation for ``--epochs`` epochs on the
same training images, alternating which goes first, each in a process of its own. hml_vae
runs with its persistent compile cache off (every first epoch compiles, as a machine's
first run does) and, as ``hml_vae_cached``, with a cache that an untimed run of the same
recipe filled just before (a machine's every later run). Reported per run:
seconds of every epoch, images per second in steady state (median of epochs 2..) and
counting the first (compiling) epoch (all images over all the time), and the validation
loss after the epochs, computed the same way on both sides: MSE per pixel for the
autoencoders, −ELBO in nats per image for the VAE (a Bernoulli decoder's on the validation
images binarized once with a fixed seed). Ratios are each hml_vae precision's images/s
over each PyTorch implementation's, per round and the median over every round.

Implementations: ``hml_vae`` (as ``scripts/train.py`` trains, in float32: the default of
every family but conv, which trains in bfloat16 where the CPU has it),
``hml_vae_cached`` (the same, compile cache filled), ``hml_vae_bf16`` (``--precision
mixed_bfloat16``), ``torch`` (float32) and ``torch_bf16``
(the same loop under CPU bfloat16 autocast). The training loss of each PyTorch mirror
includes what hml_vae's does: the sparse model's KL penalty, the denoising model's
dropout of its inputs.

Writes benchmarks/results/vs_pytorch.json and .md (or into ``--results-dir``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import tempfile
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
FAMILIES = ("stacked", "tied", "denoising", "sparse", "conv", "recurrent", "vae")
# hml_vae in each precision it offers on CPU (float32, the default, and mixed bfloat16),
# compiling from scratch, and in float32 with its compile cache filled; PyTorch in float32
# and under its CPU bfloat16 autocast.
PRECISIONS = {"hml_vae": "float32", "hml_vae_cached": "float32",
              "hml_vae_bf16": "mixed_bfloat16"}
CACHED = {"hml_vae_cached"}
IMPLEMENTATIONS = (*PRECISIONS, "torch", "torch_bf16")
# PyTorch 2.13's CPU LSTM has no oneDNN bfloat16 primitive here ("could not create a
# primitive descriptor for the LSTM forward propagation primitive"): no torch_bf16 row.
NO_BFLOAT16 = {"recurrent": "PyTorch's CPU LSTM has no bfloat16 kernel on this machine"}


def recipe(family: str, epochs: int, seed: int, precision: str = "float32"):
    from hml_vae.config import make_config

    return make_config(family, "default", epochs=epochs, seed=seed, precision=precision)


def fixed_binarization(images: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


# --- hml_vae ---------------------------------------------------------------------------------


def run_hml_vae(family: str, data, epochs: int, seed: int, precision: str) -> dict:
    """The family's default recipe as ``scripts/train.py`` builds, compiles and fits it,
    in ``precision``; the validation loss of the model converted to float32, as
    ``scripts/train.py`` evaluates."""
    import keras

    from hml_vae import families
    from hml_vae.evaluation import likelihood_terms
    from hml_vae.training import build_and_compile, fit_arguments, make_training_data

    config = recipe(family, epochs, seed, precision).for_images(data.image_shape)
    keras.utils.set_random_seed(seed)
    models = build_and_compile(config)
    train, valid = make_training_data(config, data)
    timer = epoch_timer()
    models.whole.fit(**fit_arguments(models.whole, train, callbacks=[timer]), epochs=epochs,
                     verbose=0, shuffle=False)
    models = families.in_float32(config, models)
    images = data.valid.images
    if config.family.variational:
        if config.binarize == "dynamic":
            images = fixed_binarization(images, seed)
        loss = float(np.mean(likelihood_terms(models, images, iwae_samples=1,
                                              seed=seed)["neg_elbo"]))
    else:
        loss = float(np.mean((models.whole.predict(images, verbose=0) - images) ** 2))
    return {"epoch_seconds": timer.wall, "epoch_cpu_seconds": timer.cpu,
            "images_per_epoch": train.steps * config.batch_size,
            "valid_loss": loss}


# --- PyTorch ---------------------------------------------------------------------------------


def run_torch(family: str, data, epochs: int, seed: int, bfloat16: bool = False) -> dict:
    """The same recipe as a plain PyTorch loop over batches sliced from in-memory tensors
    (full batches only, as hml_vae trains)."""
    import torch

    from benchmarks.torch_mirrors import torch_model, torch_optimizer
    torch.manual_seed(seed)
    config = recipe(family, epochs, seed).for_images(data.image_shape)
    channels_first = family == "conv"
    model = torch_model(family, config, data.image_shape)
    optimizer = torch_optimizer(config, model.parameters())
    images = torch.from_numpy(data.train.images)
    if channels_first:
        images = images.permute(0, 3, 1, 2).contiguous()
    variational = family == "vae"
    binarize = variational and config.binarize == "dynamic"
    batch = config.batch_size
    steps = len(images) // batch
    generator = torch.Generator().manual_seed(seed)

    def autocast():
        return (torch.autocast("cpu", dtype=torch.bfloat16) if bfloat16
                else contextlib.nullcontext())

    def loss_of(x):
        with autocast():
            if variational:
                return model(x).mean()
            loss = torch.mean((model(x).float() - x) ** 2)
            return loss + model.penalty if model.training and hasattr(model, "penalty") \
                else loss

    times = []
    model.train()
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps):
            x = images[order[step * batch:(step + 1) * batch]]
            if binarize:  # as hml_vae trains a Bernoulli VAE
                x = torch.bernoulli(x, generator=generator)
            optimizer.zero_grad()
            loss_of(x).backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    model.eval()
    valid = data.valid.images
    if binarize:
        valid = fixed_binarization(valid, seed)
    x = torch.from_numpy(valid)
    if channels_first:
        x = x.permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        valid_loss = float(loss_of(x))
    return {"epoch_seconds": times, "images_per_epoch": steps * batch,
            "valid_loss": valid_loss, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


# --- The run ---------------------------------------------------------------------------------


def steady_speed(result: dict) -> float:
    """Images per second over epochs 2.. (median epoch)."""
    return result["images_per_epoch"] / statistics.median(result["epoch_seconds"][1:])


def speed_with_compile(result: dict) -> float:
    """Images per second over every epoch, the first (compiling) one included."""
    seconds = result["epoch_seconds"]
    return result["images_per_epoch"] * len(seconds) / sum(seconds)


def run_in_child(implementation: str, family: str, epochs: int, seed: int,
                 limit: int | None) -> dict:
    """``run_one`` in a process of its own: TensorFlow's and PyTorch's thread pools never
    share a process (in one, PyTorch measured several times slower). hml_vae compiles its
    step from scratch (persistent compile cache off), as a first run on a machine does;
    a ``CACHED`` implementation reads a new cache that an untimed one-epoch run of the
    same recipe filled first, as every later run does."""
    if implementation not in CACHED:
        return child_result(implementation, family, epochs, seed, limit, "off")
    with tempfile.TemporaryDirectory(prefix="hml_vae_xla_") as cache:
        child_result(implementation, family, 1, seed, limit, cache)
        return child_result(implementation, family, epochs, seed, limit, cache)


def child_result(implementation: str, family: str, epochs: int, seed: int,
                 limit: int | None, compile_cache: str) -> dict:
    return run_child(__file__, ["--child", implementation, family, "--epochs", str(epochs),
                                "--seed", str(seed)]
                     + ([] if limit is None else ["--limit", str(limit)]),
                     HML_VAE_COMPILE_CACHE=compile_cache)


def run_one(implementation: str, family: str, data, epochs: int, seed: int) -> dict:
    if implementation in PRECISIONS:
        return run_hml_vae(family, data, epochs, seed, PRECISIONS[implementation])
    return run_torch(family, data, epochs, seed, bfloat16=implementation == "torch_bf16")


def book_run_seconds(result: dict, book: dict) -> float:
    """Seconds the book's whole run would take at this run's speeds: the first epoch's
    extra time over a steady one (compiling, warming up; it does not grow with the
    images), plus the book's epochs over all its training images at the steady speed."""
    steady = statistics.median(result["epoch_seconds"][1:])
    return (result["epoch_seconds"][0] - steady) + book["epochs"] * book["train_images"] * (
        steady / result["images_per_epoch"])


def ratios(ours: list[dict], theirs: list[dict], book: dict) -> dict:
    """ours' speed over theirs', round by round (the rounds ran alternating), and the
    medians over every round: steady, counting the first epoch of this run, and for the
    book's whole run (:func:`book_run_seconds`, a projection)."""
    pairs = list(zip(ours, theirs, strict=True))
    steady = [steady_speed(a) / steady_speed(b) for a, b in pairs]
    compiled = [speed_with_compile(a) / speed_with_compile(b) for a, b in pairs]
    book_run = [book_run_seconds(b, book) / book_run_seconds(a, book) for a, b in pairs]
    return {"steady_per_round": steady, "steady_median": statistics.median(steady),
            "with_compile_per_round": compiled,
            "with_compile_median": statistics.median(compiled),
            "book_run_per_round": book_run, "book_run_median": statistics.median(book_run)}


def summarize(runs: dict, book_runs: dict) -> dict:
    """Per family: each implementation's medians over all rounds, and the ratios of each
    hml_vae precision over each PyTorch implementation."""
    summary = {}
    for family, by_implementation in runs.items():
        rows = {}
        for name, results in by_implementation.items():
            rows[name] = {
                "steady_images_per_second": statistics.median(map(steady_speed, results)),
                "images_per_second_with_compile": statistics.median(
                    map(speed_with_compile, results)),
                "valid_loss": statistics.median(r["valid_loss"] for r in results),
            }
        ours = [name for name in by_implementation if name in PRECISIONS]
        theirs = [name for name in by_implementation if name not in PRECISIONS]
        comparisons = [{"ours": a, "theirs": b,
                        **ratios(by_implementation[a], by_implementation[b],
                                 book_runs[family])}
                       for a in ours for b in theirs]
        summary[family] = {"implementations": rows, "comparisons": comparisons}
    return summary


def to_markdown(report: dict) -> str:
    """The report, from the results file alone."""
    protocol = report["protocol"]
    lines = [
        "# Each family's book recipe: hml_vae against a plain PyTorch loop", "",
        stamp_line(report["machine"]) + " "
        f"{protocol['train_images']:,} training images, {protocol['epochs']} epochs × "
        f"{protocol['rounds']} rounds, alternating. Ratios are hml_vae's images/s over the "
        "other's; each cell gives the median over every round, then every round. The book's "
        "run: the first epoch's extra time over a steady one plus the book's epochs over "
        "all its training images at the steady speed, for each side (a projection from "
        "this run's epochs).", "",
        *comparison_table(report),
    ]
    lines += ["", "| family | implementation | steady images/s | counting the first epoch | "
              "valid loss |", "|---|---|---|---|---|"]
    for family, entry in report["summary"].items():
        for name, row in entry["implementations"].items():
            lines.append(f"| {family} | {name} | {row['steady_images_per_second']:,.0f} | "
                         f"{row['images_per_second_with_compile']:,.0f} | "
                         f"{row['valid_loss']:.4g} |")
    for family, left_out in protocol.get("left_out", {}).items():
        lines += [f"{family}: no {name} row ({why})." for name, why in left_out.items()]
    if not set(protocol["implementations"]) - set(PRECISIONS):
        lines.append("torch was not installed: hml_vae alone (a smoke run).")
    lines += ["", "Valid loss: MSE per pixel (autoencoders), −ELBO nats/image (VAE).", ""]
    return "\n".join(lines)


def comparison_table(report: dict, pairs=None) -> list[str]:
    """hml_vae over PyTorch, one line per (family, ours, theirs) — of ``pairs`` only, when
    given (also the README's table, benchmarks/readme_tables.py)."""
    lines = [
        "| family | ours | vs | steady state | counting the first epoch | the book's run "
        "(projected) | valid loss ours / theirs |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, entry in report["summary"].items():
        losses = {name: row["valid_loss"] for name, row in entry["implementations"].items()}
        for ratio in entry["comparisons"]:
            if pairs is not None and (ratio["ours"], ratio["theirs"]) not in pairs:
                continue
            steady = " / ".join(f"{r:.2f}" for r in ratio["steady_per_round"])
            compiled = " / ".join(f"{r:.2f}" for r in ratio["with_compile_per_round"])
            book = " / ".join(f"{r:.2f}" for r in ratio["book_run_per_round"])
            lines.append(
                f"| {family} | {ratio['ours']} | {ratio['theirs']} | "
                f"**{ratio['steady_median']:.2f}×** ({steady}) | "
                f"**{ratio['with_compile_median']:.2f}×** ({compiled}) | "
                f"**{ratio['book_run_median']:.2f}×** ({book}) | "
                f"{losses[ratio['ours']]:.4g} / {losses[ratio['theirs']]:.4g} |")
    return lines


def book_run_sizes(families) -> dict:
    """{family: the book's epochs and training images} (what a book run trains)."""
    from hml_vae.config import make_config
    from hml_vae.data import load_dataset

    images = len(load_dataset("fashion_mnist").train)
    return {family: {"epochs": make_config(family, "default").epochs, "train_images": images}
            for family in families}


def render(results_dir: Path) -> None:
    """Recomputes vs_pytorch.json's summary from its runs and rewrites its report."""
    report = json.loads((results_dir / "vs_pytorch.json").read_text())
    protocol = report["protocol"]
    protocol.setdefault("book_runs", book_run_sizes(protocol["families"]))
    report["summary"] = summarize(report["runs"], protocol["book_runs"])
    write_results(results_dir, "vs_pytorch", report, to_markdown)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, help="train on the first N images")
    parser.add_argument("--quick", action="store_true",
                        help="stacked only, 2 epochs, 1 round, 512 images: checks that it "
                        "runs")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--without-torch-if-missing", action="store_true",
                        help="without torch installed, measure hml_vae alone (smoke runs)")
    parser.add_argument("--render", action="store_true",
                        help="train nothing: recompute the summary and the report of "
                             "--results-dir/vs_pytorch.json from its runs")
    parser.add_argument("--child", nargs=2, metavar=("IMPLEMENTATION", "FAMILY"),
                        help=argparse.SUPPRESS)  # one run, its result as JSON on stdout
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from hml_vae.data import load_dataset

        implementation, family = args.child
        data = load_dataset("fashion_mnist", limit=args.limit)
        print(json.dumps(run_one(implementation, family, data, args.epochs, args.seed)))
        return 0
    if args.render:
        render(args.results_dir)
        return 0
    if args.quick:
        args.families, args.epochs, args.rounds, args.limit = ["stacked"], 2, 1, 512
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 compiles; steady state is 2..)")

    from hml_vae.data import load_dataset

    machine = describe_machine()
    data = load_dataset("fashion_mnist", limit=args.limit)
    book_runs = book_run_sizes(args.families)
    implementations = IMPLEMENTATIONS
    if importlib.util.find_spec("torch") is None:
        if not args.without_torch_if_missing:
            parser.error("torch is not installed: pip install -r benchmarks/requirements.txt")
        implementations = tuple(PRECISIONS)
    runs = {family: {name: [] for name in implementations
                     if not (name == "torch_bf16" and family in NO_BFLOAT16)}
            for family in args.families}
    for round_index in range(args.rounds):
        for family in args.families:
            order = list(runs[family])
            if round_index % 2:
                order.reverse()
            for name in order:
                result = run_in_child(name, family, args.epochs, round_index, args.limit)
                runs[family][name].append(result)
                print(f"round {round_index + 1} {family} {name}: "
                      f"{steady_speed(result):,.0f} images/s steady, "
                      f"{speed_with_compile(result):,.0f} counting compile, "
                      f"valid loss {result['valid_loss']:.4g}", flush=True)
    report = {
        "machine": finished(machine),
        "protocol": {"epochs": args.epochs, "rounds": args.rounds, "book_runs": book_runs,
                     "train_images": len(data.train), "valid_images": len(data.valid),
                     "families": args.families, "implementations": list(implementations),
                     "left_out": {family: {"torch_bf16": why} for family, why in
                                  NO_BFLOAT16.items() if family in args.families}},
        "summary": summarize(runs, book_runs),
        "runs": runs,
    }
    stem = "vs_pytorch_quick" if args.quick else "vs_pytorch"
    write_results(args.results_dir, stem, report, to_markdown)
    return 0


if __name__ == "__main__":
    from hml_vae import cli

    sys.exit(cli.run_main(main))  # bad input (a missing results file): one line
