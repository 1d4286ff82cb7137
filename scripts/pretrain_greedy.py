"""Greedy layer-wise pretraining: train one shallow autoencoder per coding size, each on the
codings of the one before, stack them, optionally fine-tune, evaluate, write a run directory.

    python scripts/pretrain_greedy.py --codings 100,30 --output runs/greedy
    python scripts/pretrain_greedy.py --codings 100,30 --fine-tune-epochs 10 --output RUN
    python scripts/pretrain_greedy.py --preset tiny --limit 1000 --output RUN
    python scripts/pretrain_greedy.py --strategy mirrored --cpu-replicas 2 --output RUN

--epochs trains each level. The run directory is the same as scripts/train.py's (config.json,
model.keras, encoder.keras, decoder.keras, history.json = fine-tuning epochs, metrics.json)
plus history_level_<k>.json per level; it appears only when the run has finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any checkout

from hml_vae import cli, distribute  # noqa: E402
from hml_vae.config import PRESETS, STRATEGIES, make_config  # noqa: E402
from hml_vae.data import BINARIZATIONS, DATASETS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codings", type=cli.int_list,
                        help="coding size of each level, e.g. 100,30 (default: 100,30)")
    parser.add_argument("--fine-tune-epochs", type=cli.non_negative_int,
                        help="epochs of end-to-end training after stacking (default: 0)")
    parser.add_argument("--preset", default="default", choices=PRESETS,
                        help="default: HOML's stacked recipe per level; tiny: seconds on a CPU")
    parser.add_argument("--output", required=True, help="run directory to create")
    parser.add_argument("--dataset", choices=DATASETS, help="default: fashion_mnist")
    parser.add_argument("--data-dir", help="directory with the four IDX files")
    parser.add_argument("--download", action="store_true", default=None,
                        help="let tensorflow-datasets download the data (needs network)")
    parser.add_argument("--limit", type=cli.positive_int, help="train on the first N images")
    parser.add_argument("--binarize", choices=BINARIZATIONS)
    parser.add_argument("--epochs", type=cli.positive_int, help="epochs of each level")
    parser.add_argument("--batch-size", type=cli.positive_int)
    parser.add_argument("--learning-rate", type=cli.positive_float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--strategy", choices=[name for name in STRATEGIES
                                               if name != "multi_worker"],
                        help="default, mirrored (all GPUs or --cpu-replicas) or auto "
                        "(default: default)")
    parser.add_argument("--cpu-replicas", type=cli.positive_int,
                        help="split the CPU into N logical devices for --strategy mirrored")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = vars(parse_args(argv))
    preset, output, codings = args.pop("preset"), args.pop("output"), args.pop("codings")
    if codings is not None:
        if len(codings) < 2:
            raise ValueError(f"--codings {codings[0]}: greedy pretraining stacks at least two "
                             f"levels; pass e.g. --codings 100,30.")
        args.update(hidden=codings[:-1], latent_dim=codings[-1])
    config = make_config("greedy", preset, **args)
    print(f"config: {config.to_json()}", file=sys.stderr)
    # TF_CONFIG and the strategy options, checked before TensorFlow is imported.
    distribute.resolve_strategy(config.strategy, distribute.read_tf_config(),
                                config.cpu_replicas)

    from hml_vae.pretraining import pretrain_and_evaluate  # imports TensorFlow

    metrics = pretrain_and_evaluate(config, output)
    print(f"test MSE per pixel: {metrics['test_mse_per_pixel']:.5f} "
          f"(validation {metrics['valid_mse_per_pixel']:.5f}; stacked before fine-tuning "
          f"{metrics['stacked_test_mse_per_pixel']:.5f}); trained in "
          f"{metrics['train_seconds']:.1f} s")
    print(f"run directory: {output}")


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
