"""Trains every HOML ch. 17 autoencoder family with its ``default`` recipe and tabulates
validation/test MSE per pixel (HOML's number), epochs, parameters and wall time.

    python benchmarks/homl_zoo.py                              # full Fashion-MNIST (slow)
    python benchmarks/homl_zoo.py --families conv,sparse
    python benchmarks/homl_zoo.py --limit 1000 --epochs 1 --results-dir /tmp/zoo-smoke

Writes ``homl_zoo.json`` and ``homl_zoo.md`` to --results-dir (default
benchmarks/results/); a run with --limit or --epochs adds them to the file names, so a
smoke run never overwrites the real table. Each family's run directory goes to --runs-dir
(default: a temporary directory, deleted at the end). Times on a shared machine are noisy:
compare families within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any checkout

from benchmarks.machine import describe_machine  # noqa: E402
from hml_vae import cli, families  # noqa: E402
from hml_vae.config import make_config  # noqa: E402

FAMILIES = ("stacked", "tied", "conv", "recurrent", "denoising", "sparse", "greedy")
# Family-specific metrics worth a column: (metrics key, column title).
EXTRA_COLUMNS = (
    ("test_denoising_mse_per_pixel", "denoised test MSE"),
    ("test_noisy_input_mse_per_pixel", "noisy input MSE"),
    ("test_coding_mean_activation", "coding mean activation"),
    ("stacked_test_mse_per_pixel", "greedy stack before fine-tuning"),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", type=cli.name_list(FAMILIES, "families"),
                        default=FAMILIES,
                        help=f"comma-separated subset of {','.join(FAMILIES)} (default: all)")
    parser.add_argument("--limit", type=cli.positive_int,
                        help="train on the first N images (smoke runs)")
    parser.add_argument("--epochs", type=cli.positive_int,
                        help="override the recipes' epochs (smoke runs)")
    parser.add_argument("--data-dir", help="directory with the four IDX files")
    parser.add_argument("--results-dir", type=Path,
                        default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--runs-dir", type=Path,
                        help="keep each family's run directory here (default: discard)")
    return parser.parse_args(argv)


def recipe(config) -> str:
    """A short description of a family's architecture and options."""
    sizes = ",".join(map(str, (*config.hidden, config.latent_dim)))
    extras = {
        "denoising": f" {config.noise}"
        + (f" rate {config.dropout_rate}" if config.noise == "dropout"
           else f" stddev {config.noise_stddev}"),
        "sparse": f" {config.sparsity} weight {config.sparsity_weight}"
        + (f" target {config.sparsity_target}" if config.sparsity == "kl" else ""),
        "greedy": f" fine-tune {config.fine_tune_epochs} epochs",
    }
    return f"{sizes}{extras.get(config.model, '')}"


def run_family(family: str, args: argparse.Namespace, runs_dir: Path) -> dict:
    """Trains one family's default recipe and returns its row of the table."""
    import keras

    from hml_vae import families
    from hml_vae.training import train_and_evaluate

    config = make_config(family, "default", limit=args.limit, epochs=args.epochs,
                         data_dir=args.data_dir, make_plots=False)
    keras.backend.clear_session()
    parameters = families.build(config.for_images((28, 28, 1))).whole.count_params()
    keras.backend.clear_session()
    started = time.perf_counter()
    metrics = train_and_evaluate(config, runs_dir / family)
    per_level = metrics.get("pretrain_epochs_per_level", 0)  # greedy: levels train first
    levels = len(config.hidden) + 1 if per_level else 0
    return {
        "family": family,
        "recipe": recipe(config),
        "parameters": parameters,
        # Greedy: every level trains ``epochs``, then the stack fine-tunes.
        "epochs": per_level * levels + metrics["epochs_trained"] if levels
        else metrics["epochs_trained"],
        "valid_mse_per_pixel": metrics["valid_mse_per_pixel"],
        "test_mse_per_pixel": metrics["test_mse_per_pixel"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": time.perf_counter() - started,
        "train_images": metrics["train_images"],
        **{key: metrics[key] for key, _ in EXTRA_COLUMNS if key in metrics},
    }


def markdown(rows: list[dict], header: dict) -> str:
    """The results as a markdown table with the machine and settings above it."""
    host = header["machine"]
    settings = f"Training images: {rows[0]['train_images'] if rows else '?'}"
    if header["epochs"] is not None:
        settings += f"; epochs overridden to {header['epochs']} (not HOML's recipe)"
    lines = [
        "# HOML ch. 17 autoencoders on Fashion-MNIST",
        "",
        f"Measured {header['date']} on {host['host']} ({host['cpu']}, "
        f"{host['cpu_count']} CPUs, {host['gpus']} GPUs; TensorFlow {host['tensorflow']}, "
        f"Keras {host['keras']}). {settings}.",
        "",
        "MSE per pixel is HOML's number: mean over images and pixels of (reconstruction - "
        "image)^2, pixels in [0, 1]. Times are wall-clock seconds of the training epochs on a "
        "shared machine: compare them as ratios within this table.",
        "",
        "| family | recipe | parameters | epochs | valid MSE/pixel | test MSE/pixel | "
        "train s | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        notes = "; ".join(f"{title} {row[key]:.4f}" for key, title in EXTRA_COLUMNS
                          if key in row)
        lines.append(
            f"| {row['family']} | {row['recipe']} | {row['parameters']:,} | {row['epochs']} | "
            f"{row['valid_mse_per_pixel']:.5f} | {row['test_mse_per_pixel']:.5f} | "
            f"{row['train_seconds']:.0f} | {notes} |"
        )
    return "\n".join(lines) + "\n"


def results_stem(args: argparse.Namespace) -> str:
    """``homl_zoo``, plus the overrides of a smoke run so it never replaces the real table."""
    stem = "homl_zoo"
    if args.limit is not None:
        stem += f"_limit{args.limit}"
    if args.epochs is not None:
        stem += f"_epochs{args.epochs}"
    return stem


def main(argv=None) -> None:
    args = parse_args(argv)
    missing = [family for family in args.families if family not in families.names()]
    if missing:
        raise ValueError(f"families {missing} are not models of this hml_vae version.")
    header = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "limit": args.limit,
        "epochs": args.epochs,
        "command": " ".join(["python", *sys.argv]),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="homl_zoo_") as temporary:
        runs_dir = args.runs_dir or Path(temporary)
        for family in args.families:
            print(f"=== {family} ===", file=sys.stderr)
            rows.append(run_family(family, args, runs_dir))
            # Written after every family, so a long benchmark that stops keeps its rows.
            write_results(args.results_dir, results_stem(args), header, rows)
    print(markdown(rows, header))


def write_results(directory: Path, stem: str, header: dict, rows: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(
        json.dumps({**header, "results": rows}, indent=2) + "\n")
    (directory / f"{stem}.md").write_text(markdown(rows, header))


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
