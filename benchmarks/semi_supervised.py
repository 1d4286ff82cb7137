"""Benchmark: test accuracy with 100 / 1,000 / 10,000 labels on full Fashion-MNIST, for
the encoders of the stacked autoencoder, the greedy-pretrained one and the VAE, against the
same architectures from scratch and logistic regression on the frozen codings. A
measurement, not a test: about an hour on a 2-core CPU.

    python benchmarks/semi_supervised.py                                  # full protocol
    python benchmarks/semi_supervised.py --runs-dir runs/bench-encoders   # reuse encoders
    python benchmarks/semi_supervised.py --epochs 30 --patience 5         # reduced
    python benchmarks/semi_supervised.py --limit 2000 --encoder-epochs 1 --labels 100 \
        --seeds 1 --epochs 3                                              # smoke

Encoders (each trained on the whole training split, the unlabeled pool, with its
``default`` recipe unless --encoder-epochs is given; a finished run of that name in
--runs-dir is reused): ``stacked`` 784-100-30 (HOML), ``greedy`` the same stack pretrained
level by level, ``vae`` 784-150-100-10 with the book's Gaussian decoder (the classifier uses the
posterior mean). Each experiment is hml_vae.semi_supervised.run_experiment; its output
directory (results.json, results.md, accuracy_vs_labels.png) stays in --runs-dir and is
reused when the benchmark is run again; an interrupted encoder run or experiment resumes
where it stopped. Writes benchmarks/results/semi_supervised.json
and .md (with a suffix naming every reduction) with the machine description.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from any checkout

from hml_vae import cli  # noqa: E402
from hml_vae.config import make_config  # noqa: E402

ENCODERS = ("stacked", "greedy", "vae")
DEFAULT_LABELS = (100, 1000, 10000)
DEFAULT_SEEDS = 3


def train_encoder(name: str, args, run_dir: Path) -> None:
    """Trains the encoder run ``name`` into ``run_dir`` unless a finished one is there."""
    from hml_vae.errors import RunError
    from hml_vae.runs import check_finished

    try:
        check_finished(run_dir)
        print(f"{name}: reusing the finished run {run_dir}", file=sys.stderr)
        return
    except RunError:
        pass
    from hml_vae.training import train_and_evaluate

    config = make_config(name, "default", epochs=args.encoder_epochs, limit=args.limit,
                         make_plots=False)
    print(f"{name}: training {config.to_json()}", file=sys.stderr)
    train_and_evaluate(config, run_dir)  # resumes an interrupted run of the same config


def run_encoder(name: str, args, settings, runs_dir: Path) -> dict:
    """The experiment's report for one encoder (reused when its output exists)."""
    from hml_vae.runs import load_run
    from hml_vae.semi_supervised import log_to_stderr, run_experiment

    run_dir = runs_dir / name
    train_encoder(name, args, run_dir)
    output = runs_dir / f"semi_{name}{suffix(args)}"
    if (output / "results.json").exists():
        print(f"{name}: reusing the finished experiment {output}", file=sys.stderr)
        report = json.loads((output / "results.json").read_text())
    else:
        report = run_experiment(run_dir, settings, output, log=log_to_stderr)
    run = load_run(run_dir)
    return {
        "encoder_run": str(run_dir),
        "encoder_config": report["encoder_config"],
        "encoder_metrics": {key: run.metrics[key] for key in sorted(run.metrics)
                            if key.startswith("test_") or key == "train_seconds"},
        # Summed from the rows, so a reused experiment reports the time it took to run.
        "experiment_seconds": sum(row["seconds"] for row in report["results"]),
        "experiment_dir": str(output),
        "results": report["results"],
        "summary": report["summary"],
        "train_pool": report["train_pool"],
        "test_images": report["test_images"],
    }


def suffix(args) -> str:
    """File-name suffix naming every departure from the full protocol ('' for none)."""
    parts = []
    if args.limit:
        parts.append(f"limit{args.limit}")
    if args.encoder_epochs:
        parts.append(f"encoderepochs{args.encoder_epochs}")
    if args.epochs:
        parts.append(f"epochs{args.epochs}")
    if args.patience:
        parts.append(f"patience{args.patience}")
    if tuple(args.labels) != DEFAULT_LABELS:
        parts.append("labels" + "-".join(map(str, args.labels)))
    if args.seeds != DEFAULT_SEEDS:
        parts.append(f"seeds{args.seeds}")
    return "".join(f"_{part}" for part in parts)


def accuracy_table(report: dict) -> list[str]:
    """Mean ± std test accuracy (%) per encoder, budget and method, and fine-tuned minus
    scratch (also the README's table, benchmarks/readme_tables.py)."""
    from hml_vae.semi_supervised import METHODS

    lines = ["| encoder | labels | " + " | ".join(METHODS) + " | fine-tuned − scratch |",
             "|---|---:|" + "---:|" * (len(METHODS) + 1)]
    for name, encoder in report["encoders"].items():
        for budget in sorted({row["budget"] for row in encoder["summary"]}):
            cells = {row["method"]: row for row in encoder["summary"] if row["budget"] == budget}
            gain = 100 * (cells["pretrained_fine_tuned"]["mean"] - cells["scratch"]["mean"])
            lines.append(
                f"| {name} | {budget:,} | " + " | ".join(
                    f"{100 * cells[method]['mean']:.1f} ± {100 * cells[method]['std']:.1f}"
                    for method in METHODS) + f" | {gain:+.1f} |")
    return lines


def to_markdown(report: dict) -> str:
    """Mean ± std test accuracy per encoder, budget and method, and the gain of
    pretraining (fine-tuned minus scratch) in percentage points."""
    from benchmarks.machine import stamp_line

    machine = report["machine"]
    lines = [
        "# Semi-supervised classification benchmark" + (
            " (reduced: " + report["reductions"] + ")" if report["reductions"] else ""),
        "",
        stamp_line(machine),
        "",
        f"Protocol: {report['protocol']}",
        "",
        *accuracy_table(report),
    ]
    lines += [
        "",
        "Test accuracy in %, mean ± std (n − 1) over the seeds; the last column is the "
        "difference of the means in percentage points (negative: pretraining did not help).",
        "",
        "| encoder | encoder training | test metric of the encoder run |",
        "|---|---|---|",
    ]
    for name, encoder in report["encoders"].items():
        config, metrics = encoder["encoder_config"], encoder["encoder_metrics"]
        metric = ("test −ELBO " + f"{metrics['test_neg_elbo']:.1f} nats"
                  if "test_neg_elbo" in metrics
                  else f"test MSE/pixel {metrics['test_mse_per_pixel']:.4f}")
        hidden = ",".join(map(str, config["hidden"]))
        epochs = (f"{config['epochs']} epochs per level, {config['fine_tune_epochs']} of "
                  f"fine-tuning" if config["model"] == "greedy" else f"{config['epochs']} epochs")
        lines.append(f"| {name} | {epochs}, hidden {hidden}, "
                     f"coding {config['latent_dim']}, {metrics['train_seconds']:.0f} s | "
                     f"{metric} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", type=cli.name_list(ENCODERS, "encoders"),
                        default=ENCODERS,
                        help=f"comma-separated, from {', '.join(ENCODERS)}")
    parser.add_argument("--labels", type=cli.int_list, default=DEFAULT_LABELS)
    parser.add_argument("--seeds", type=cli.positive_int, default=DEFAULT_SEEDS)
    parser.add_argument("--limit", type=cli.positive_int, help="smoke runs only")
    parser.add_argument("--encoder-epochs", type=cli.positive_int,
                        help="epochs of the encoder runs (default: each recipe's)")
    parser.add_argument("--epochs", type=cli.positive_int,
                        help="classifier: at most N epochs per phase (default: 50)")
    parser.add_argument("--patience", type=cli.positive_int,
                        help="classifier early stopping patience (default: 10)")
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "semi_supervised_benchmark"),
                        help="encoder runs and experiment outputs (kept, reused)")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    names = args.encoders
    from benchmarks.machine import describe_machine, finished
    from hml_vae.semi_supervised import ExperimentSettings

    machine = describe_machine()
    optional = {"frozen_epochs": args.epochs, "fine_tune_epochs": args.epochs,
                "patience": args.patience}
    settings = ExperimentSettings(
        budgets=args.labels, seeds=tuple(range(args.seeds)), limit=args.limit,
        **{key: value for key, value in optional.items() if value is not None})
    runs_dir = Path(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    encoders = {name: run_encoder(name, args, settings, runs_dir) for name in names}
    reductions = suffix(args).lstrip("_").replace("_", ", ")
    report = {
        "reductions": reductions,
        "protocol": (
            f"encoders trained on the {'first ' if args.limit else ''}"
            f"{next(iter(encoders.values()))['train_pool']:,} training images (the labels "
            f"are drawn from the same images); for each budget "
            f"({', '.join(map(str, args.labels))} labels, class-balanced, 20% of them the "
            f"validation part for early stopping) and seed 0..{args.seeds - 1}: a head of "
            f"Dense({', '.join(map(str, settings.head_units)) or 'none'}) on standardized "
            f"codings, phase 1 encoder frozen (Adam "
            f"{settings.frozen_learning_rate:g}, ≤ {settings.frozen_epochs} epochs), phase 2 "
            f"all layers (Adam {settings.fine_tune_learning_rate:g}, ≤ "
            f"{settings.fine_tune_epochs} epochs), scratch (Adam "
            f"{settings.frozen_learning_rate:g}, ≤ "
            f"{settings.frozen_epochs + settings.fine_tune_epochs} epochs), patience "
            f"{settings.patience}, epochs of ≥ 25 batches of {settings.batch_size}; logistic "
            f"regression C from {{0.01, 0.1, 1, 10}} on the validation part; accuracy on "
            f"{next(iter(encoders.values()))['test_images']:,} test images. The stacked and "
            f"greedy encoders share one architecture, so their scratch columns are the same "
            f"runs."
        ),
        "settings": {key: list(value) if isinstance(value, tuple) else value
                     for key, value in vars(settings).items()},
        "machine": finished(machine),
        "encoders": encoders,
    }
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"semi_supervised{suffix(args)}"
    (results_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (results_dir / f"{stem}.md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
