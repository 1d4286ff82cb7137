"""Benchmark: test −ELBO, importance-weighted NLL (K = 1000) and amortization gap of two
dense-VAE recipes on Fashion-MNIST. A measurement, not a test; it takes hours on a CPU.

    python benchmarks/vae_likelihood.py                       # full protocol
    python benchmarks/vae_likelihood.py --epochs 10 --iwae-samples 1000
    python benchmarks/vae_likelihood.py --limit 1000 --epochs 1 --iwae-samples 50  # smoke

Recipes (Bernoulli decoder for both, so the numbers are log-likelihoods):
  pytorch_examples  784-400-20, ReLU, Adam 1e-3, batch 128 (pytorch/examples vae/main.py)
  homl              784-150-100-10, ReLU, Nadam 1e-3, batch 128 (HOML 3rd ed. ch. 17; HOML
                    itself trains with MSE on gray pixels, which gives no likelihood)

Protocol: train on dynamically binarized images (a fresh draw every epoch), evaluate on
one static binarization of the test set (seed = the run's seed), nats per image; K
importance samples per test image; the amortization gap refines the first 100 test
images' q(z|x) for 100 Adam steps. Writes benchmarks/results/vae_likelihood.json
and .md (``_limitN`` for subset runs) with the machine description.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from any checkout

from benchmarks.machine import describe_machine, finished, stamp_line  # noqa: E402
from hml_vae import cli  # noqa: E402
from hml_vae.config import make_config  # noqa: E402

RECIPES = {
    "pytorch_examples": {"hidden": (400,), "latent_dim": 20, "optimizer": "adam"},
    "homl": {"hidden": (150, 100), "latent_dim": 10, "optimizer": "nadam"},
}
REPORTED = ("test_neg_elbo", "test_reconstruction_nll", "test_kl", "test_nll_iwae",
            "active_units", "amortization_gap", "amortization_steps", "train_seconds")


def run_recipe(name: str, args, runs_dir: Path) -> dict:
    from hml_vae.training import train_and_evaluate

    config = make_config(
        "vae", "bernoulli", epochs=args.epochs, limit=args.limit, seed=args.seed,
        iwae_samples=args.iwae_samples, batch_size=128, learning_rate=1e-3,
        **RECIPES[name],
    )
    started = time.perf_counter()
    metrics = train_and_evaluate(config, runs_dir / name)
    return {
        "config": json.loads(config.to_json()),
        "wall_seconds": time.perf_counter() - started,
        **{key: metrics[key] for key in REPORTED},
        "test_binarization": metrics["test_binarization"],
        "test_images": metrics["test_images"],
    }


def to_markdown(report: dict) -> str:
    lines = [
        "# VAE likelihood benchmark" + (
            f" (subset: first {report['limit']} training images, not the full protocol)"
            if report["limit"] else ""),
        "",
        stamp_line(report["machine"]),
        "",
        f"Protocol: {report['protocol']}",
        "",
        "| recipe | epochs | test −ELBO | recon. NLL | KL | IWAE NLL (K) | active units "
        "| amortization gap (steps) | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["recipes"].items():
        lines.append(
            f"| {name} | {row['config']['epochs']} | {row['test_neg_elbo']:.2f} "
            f"| {row['test_reconstruction_nll']:.2f} | {row['test_kl']:.2f} "
            f"| {row['test_nll_iwae']:.2f} ({report['iwae_samples']}) "
            f"| {row['active_units']}/{row['config']['latent_dim']} "
            f"| {row['amortization_gap']:.2f} ({row['amortization_steps']}) "
            f"| {row['train_seconds']:.0f} |"
        )
    lines += ["", "All numbers in nats per test image (lower is better except the gap)."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", type=cli.name_list(RECIPES, "recipes"),
                        default=tuple(RECIPES),
                        help=f"comma-separated, from {', '.join(RECIPES)}")
    parser.add_argument("--epochs", type=cli.positive_int, default=10)
    parser.add_argument("--iwae-samples", type=cli.positive_int, default=1000)
    parser.add_argument("--limit", type=cli.positive_int, help="smoke runs only")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs-dir", help="keep the run directories here (default: temporary)")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    names = args.recipes
    machine = describe_machine()
    with tempfile.TemporaryDirectory() as temporary:
        runs_dir = Path(args.runs_dir or temporary)
        recipes = {name: run_recipe(name, args, runs_dir) for name in names}
    report = {
        "limit": args.limit,
        "iwae_samples": args.iwae_samples,
        "protocol": (
            f"train on dynamically binarized Fashion-MNIST "
            f"({'first ' + str(args.limit) if args.limit else 'all 55,000'} training images), "
            f"{args.epochs} epochs, batch 128, lr 1e-3; evaluate on a static binarization of "
            f"the test set (seed {args.seed}); IWAE with K = {args.iwae_samples}; amortization "
            f"gap on the first 100 test images."
        ),
        "machine": finished(machine),
        "recipes": recipes,
    }
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"vae_likelihood_limit{args.limit}" if args.limit else "vae_likelihood"
    (results_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (results_dir / f"{stem}.md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
