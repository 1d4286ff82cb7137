"""The book, number by number: every HOML ch. 17 family trained with its ``default`` preset
(the notebook's recipe) on Fashion-MNIST, its last epoch's validation loss beside the one
the book's notebook printed after the same epochs, and their ratio.

    python benchmarks/homl_zoo.py --full                    # every family, 1 seed
    python benchmarks/homl_zoo.py --full --seeds 3 --families greedy,sparse
    python benchmarks/homl_zoo.py --quick                   # 1,000 images, 1 epoch: runs?
    python benchmarks/homl_zoo.py --render                  # the .md again, from the .json

Writes ``homl_zoo.json`` and ``homl_zoo.md`` to --results-dir (default
benchmarks/results/); ``--quick`` writes ``homl_zoo_quick.*`` so a smoke run never
replaces the real table. Every seed's number is reported, and the median over the seeds;
the ratio is ours / the book's (above 1.10: more than 10 % worse than the book).

What is compared is what Keras printed as ``val_loss`` in the book's notebook: the
validation MSE per pixel, plus for the sparse model its activity penalty and for the VAE
its KL/784 (the notebook's loss, ``MSE + KL/784``, with z sampled). Ours is the same
quantity from the run's history (the VAE's −ELBO per image of the σ² = 1/2 Gaussian
decoder converted back: (−ELBO − 392·log π) / 784). The deterministic MSE per pixel of the
reconstructions of the test images (posterior mean for the VAE) is reported beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any checkout

from benchmarks.machine import describe_machine  # noqa: E402
from hml_vae import cli  # noqa: E402
from hml_vae.config import PRECISIONS  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
NOTEBOOK = ("ageron/handson-ml3, 17_autoencoders_gans_and_diffusion_models.ipynb at commit "
            "05e891c997a5b2dcb27f1179375677ad4434b502")

# What the book's notebook printed as the last epoch's val_loss of each model (Keras's
# progress line, 4 decimals), with the cell it comes from.
BOOK = {
    "stacked": {"epochs": 20, "valid_loss": 0.0132,
                "source": "stacked_ae.fit(epochs=20), Epoch 20/20: loss 0.0130, val_loss 0.0132"},
    "tied": {"epochs": 10, "valid_loss": 0.0133,
             "source": "tied_ae.fit(epochs=10), Epoch 10/10: loss 0.0132, val_loss 0.0133"},
    "conv": {"epochs": 10, "valid_loss": 0.0121,
             "source": "conv_ae.fit(epochs=10), Epoch 10/10: loss 0.0121, val_loss 0.0121"},
    "recurrent": {"epochs": 10, "valid_loss": 0.0104,
                  "source": "recurrent_ae.fit(epochs=10), Epoch 10/10: loss 0.0106, "
                            "val_loss 0.0104"},
    "denoising": {"epochs": 10, "valid_loss": 0.0166,
                  "source": "dropout_ae.fit(epochs=10), Epoch 10/10: loss 0.0183, "
                            "val_loss 0.0166"},
    # The KL model (the family's default); the notebook's L1 one printed 0.0111.
    "sparse": {"epochs": 10, "valid_loss": 0.0099,
               "source": "sparse_kl_ae.fit(epochs=10), Epoch 10/10: loss 0.0098, "
                         "val_loss 0.0099"},
    # Two levels of 10 epochs (val_loss 0.0089 on the pixels, then 0.0516 on the first
    # level's codings), then the stack fine-tuned: its last val_loss.
    "greedy": {"epochs": 5, "valid_loss": 0.0133,
               "source": "stacked_ae_1_by_1.fit(epochs=5), Epoch 5/5: loss 0.0133, "
                         "val_loss 0.0133"},
    "vae": {"epochs": 25, "valid_loss": 0.0311,
            "source": "variational_ae.fit(epochs=25, batch_size=128), Epoch 25/25: loss "
                      "0.0309, val_loss 0.0311"},
    # The notebook of the stored commit has no binary-hashing cell: no book number.
    "hashing": {"epochs": 10, "valid_loss": None, "source": "no cell in the notebook"},
}
FAMILIES = tuple(BOOK)
QUICK = {"limit": 1000, "epochs": 1}
SEED = 42  # the config's default; seed k of --seeds N is SEED + k
WORSE = 1.10  # ours / book above this: more than 10 % worse


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--full", action="store_true",
                      help="the book's recipes on all of Fashion-MNIST (slow)")
    size.add_argument("--quick", action="store_true",
                      help=f"{QUICK['limit']} images, {QUICK['epochs']} epoch: checks that it "
                           f"runs and writes its schema")
    size.add_argument("--render", action="store_true",
                      help="train nothing: rewrite homl_zoo.md and the book's columns of "
                           "homl_zoo.json from that file and this file's book numbers")
    parser.add_argument("--families", type=cli.name_list(FAMILIES, "families"),
                        default=FAMILIES,
                        help=f"comma-separated subset of {','.join(FAMILIES)} (default: all)")
    parser.add_argument("--seeds", type=cli.positive_int, default=1,
                        help="runs per family, seeds 42, 43, ... (default 1)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="train in this precision (evaluated in float32); other than "
                             "float32 writes homl_zoo_PRECISION.*")
    parser.add_argument("--data-dir", help="directory with the four IDX files")
    parser.add_argument("--results-dir", type=Path,
                        default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--runs-dir", type=Path,
                        help="keep each run directory here (default: discarded)")
    return parser.parse_args(argv)


def last_valid_loss(config, history: dict) -> float:
    """The last epoch's validation loss as the book's notebook printed it (see the module
    docstring): greedy's fine-tuning stage, the VAE's −ELBO per image turned into the
    notebook's MSE + KL/784."""
    key = "val_fine_tune_loss" if config.model == "greedy" else "val_loss"
    value = float(history[key][-1])
    if config.family.variational:
        pixels = math.prod(config.image_shape)
        sigma_squared = config.gaussian_sigma ** 2
        constant = pixels / 2 * math.log(2 * math.pi * sigma_squared)
        # Σ(x − x̂)²/(2σ²) = Σ(x − x̂)² when σ² = 1/2; the notebook divides by the pixels.
        value = (value - constant) * 2 * sigma_squared / pixels
    return value


def run_once(family: str, seed: int, args: argparse.Namespace, runs_dir: Path) -> dict:
    """Trains one family's default recipe with ``seed``; its numbers."""
    import keras

    from hml_vae.config import make_config
    from hml_vae.runs import load_run
    from hml_vae.training import train_and_evaluate

    overrides = QUICK if args.quick else {}
    config = make_config(family, "default", seed=seed, data_dir=args.data_dir,
                         precision=args.precision, make_plots=False, **overrides)
    keras.backend.clear_session()
    started = time.perf_counter()
    run_dir = runs_dir / f"{family}-seed{seed}"
    metrics = train_and_evaluate(config, run_dir)
    run = load_run(run_dir)
    return {
        "seed": seed,
        "valid_loss": last_valid_loss(run.config, run.history),
        "valid_mse_per_pixel": metrics.get("valid_mse_per_pixel"),
        "test_mse_per_pixel": metrics["test_mse_per_pixel"],
        "epochs_trained": metrics["epochs_trained"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": time.perf_counter() - started,
        "train_images": metrics["train_images"],
        **{key: metrics[key] for key in EXTRA_METRICS if key in metrics},
    }


# Family numbers worth keeping in the results (see each family's metrics).
EXTRA_METRICS = ("test_coding_mean_activation", "stacked_valid_mse_per_pixel",
                 "test_denoising_mse_per_pixel", "test_distinct_hashes", "test_bucket_purity",
                 "test_bucket_purity_chance", "test_neg_elbo", "test_kl")


def book_columns(family: str, median: float) -> dict:
    """The book's number for ``family``, where it comes from, and our median's ratio."""
    book = BOOK[family]
    return {
        "book_epochs": book["epochs"],
        "book_valid_loss": book["valid_loss"],
        "book_source": f"{NOTEBOOK}: {book['source']}",
        "ratio_to_book": None if book["valid_loss"] is None else median / book["valid_loss"],
    }


def summarize(family: str, config, rounds: list[dict]) -> dict:
    """A family's row: every seed's numbers, their medians and the ratio to the book."""
    median = statistics.median(round_["valid_loss"] for round_ in rounds)
    recipe = {"hidden": list(config.hidden), "latent_dim": config.latent_dim,
              "epochs": config.epochs, "batch_size": config.batch_size,
              "optimizer": config.optimizer, "learning_rate": config.learning_rate}
    for name in config.family.options:
        recipe[name] = getattr(config, name)
    return {
        "family": family,
        "recipe": recipe,
        "rounds": rounds,
        "median_valid_loss": median,
        "median_test_mse_per_pixel": statistics.median(
            round_["test_mse_per_pixel"] for round_ in rounds),
        **book_columns(family, median),
    }


def render(directory: Path) -> None:
    """Refreshes the book's columns of ``directory``/homl_zoo.json and rewrites its .md."""
    results = json.loads((directory / "homl_zoo.json").read_text())
    for row in results["results"]:
        row.update(book_columns(row["family"], row["median_valid_loss"]))
    write_results(directory, "homl_zoo", results)


def to_markdown(results: dict) -> str:
    """The book-vs-ours table with its stamp, from the results file alone."""
    from benchmarks.machine import stamp_line

    lines = [
        "# HOML ch. 17 recipes: the book's numbers and ours",
        "",
        stamp_line(results["machine"]) + f" Finished {results['date_end']}. Mode: "
        f"{results['mode']}"
        + (" (not the book's recipe: a smoke run)" if results["mode"] == "quick" else "")
        + f"; trained in {results.get('precision', 'float32')}; seeds "
        f"{', '.join(map(str, results['seeds']))}. Command: `{results['command']}`.",
        "",
        "valid loss = the last epoch's validation loss as Keras printed it in the book's "
        f"notebook ({NOTEBOOK}): MSE per pixel; sparse: plus its KL sparsity penalty; vae: "
        "MSE + KL/784 with z sampled; greedy: the fine-tuning's last epoch. Ratio = our "
        f"median / the book's (> {WORSE:.2f}: more than 10 % worse). test MSE = our "
        "deterministic reconstructions' MSE per pixel on the test images (the VAE's from "
        "the posterior mean). '–': the notebook printed no such number.",
        "",
        *table(results),
    ]
    return "\n".join(lines) + "\n"


def table(results: dict) -> list[str]:
    """The book-vs-ours table's lines (also the README's, benchmarks/readme_tables.py)."""
    lines = [
        "| family | epochs | book valid loss | ours, every seed | ours, median | ratio | "
        "test MSE (median) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in results["results"]:
        book = row["book_valid_loss"]
        ratio = row["ratio_to_book"]
        every = ", ".join(f"{round_['valid_loss']:.4f}" for round_ in row["rounds"])
        lines.append(
            f"| {row['family']} | {row['rounds'][0]['epochs_trained']} | "
            f"{'–' if book is None else f'{book:.4f}'} | {every} | "
            f"{row['median_valid_loss']:.4f} | {'–' if ratio is None else f'{ratio:.3f}'} | "
            f"{row['median_test_mse_per_pixel']:.4f} |")
    return lines


def write_results(directory: Path, stem: str, results: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / f"{stem}.md").write_text(to_markdown(results))


def main(argv=None) -> int:
    """Runs the benchmark and writes its results file and report."""
    from benchmarks.machine import finished
    from hml_vae.config import make_config

    args = parse_args(argv)
    if args.render:
        render(args.results_dir)
        return 0
    seeds = [SEED + index for index in range(args.seeds)]
    stem = "homl_zoo_quick" if args.quick else "homl_zoo"
    if args.precision != "float32":
        stem += f"_{args.precision}"
    results = {
        "mode": "quick" if args.quick else "full",
        "precision": args.precision,
        "seeds": seeds,
        "machine": describe_machine(),
        "command": " ".join(["python", "benchmarks/homl_zoo.py", *(argv or sys.argv[1:])]),
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="homl_zoo_") as temporary:
        runs_dir = args.runs_dir or Path(temporary)
        for family in args.families:
            rounds = []
            for seed in seeds:
                print(f"=== {family}, seed {seed} ===", file=sys.stderr, flush=True)
                rounds.append(run_once(family, seed, args, runs_dir))
            config = make_config(family, "default", **(QUICK if args.quick else {}))
            results["results"].append(summarize(family, config, rounds))
            # Written after every family, so a long run that stops keeps its rows.
            results.update(machine=finished(results["machine"]),
                           date_end=datetime.datetime.now(datetime.timezone.utc).isoformat(
                               timespec="seconds"))
            write_results(args.results_dir, stem, results)
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
