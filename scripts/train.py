"""Train one model, evaluate it and write its run directory.

    python scripts/train.py --model stacked --output runs/stacked
    python scripts/train.py --model stacked --preset tiny --epochs 1 --limit 2000 --output RUN
    python scripts/train.py --model stacked --data-dir ~/data/fashion --output RUN

The run directory holds config.json, model.keras, encoder.keras, decoder.keras,
history.json and metrics.json (see README). It appears only when the run has finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any checkout

from hml_vae import cli  # noqa: E402
from hml_vae.config import MODELS, PRESETS, STRATEGIES, make_config  # noqa: E402
from hml_vae.data import BINARIZATIONS, DATASETS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--preset", default="default", choices=PRESETS,
                        help="default: HOML's recipe; tiny: seconds on a CPU (default: default)")
    parser.add_argument("--output", required=True, help="run directory to create")
    parser.add_argument("--dataset", choices=DATASETS, help="default: fashion_mnist")
    parser.add_argument("--data-dir", help="directory with the four IDX files (overrides "
                        "HML_VAE_DATA_DIR and the installed data set)")
    parser.add_argument("--download", action="store_true", default=None,
                        help="let tensorflow-datasets download the data (needs network)")
    parser.add_argument("--limit", type=cli.positive_int,
                        help="train on the first N images (and proportionally fewer "
                        "validation/test images)")
    parser.add_argument("--binarize", choices=BINARIZATIONS)
    parser.add_argument("--epochs", type=cli.positive_int)
    parser.add_argument("--batch-size", type=cli.positive_int)
    parser.add_argument("--latent-dim", type=cli.positive_int, help="size of the coding")
    parser.add_argument("--hidden", type=cli.int_list,
                        help="encoder hidden sizes, e.g. 100 or 150,100 (decoder mirrors)")
    parser.add_argument("--learning-rate", type=cli.positive_float)
    parser.add_argument("--patience", type=cli.positive_int, dest="early_stopping_patience",
                        help="early stopping patience in epochs (default: none)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--strategy", choices=STRATEGIES)
    parser.add_argument("--no-plots", action="store_false", default=None, dest="make_plots",
                        help="skip the figures (scripts/plot.py draws them later)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = vars(parse_args(argv))
    model, preset, output = args.pop("model"), args.pop("preset"), args.pop("output")
    config = make_config(model, preset, **args)
    print(f"config: {config.to_json()}", file=sys.stderr)

    from hml_vae.training import train_and_evaluate  # imports TensorFlow: after validation

    metrics = train_and_evaluate(config, output)
    print(f"test MSE per pixel: {metrics['test_mse_per_pixel']:.5f} "
          f"(validation {metrics['valid_mse_per_pixel']:.5f}); "
          f"trained {metrics['epochs_trained']} epochs in {metrics['train_seconds']:.1f} s")
    print(f"run directory: {output}")


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
