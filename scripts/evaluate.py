"""Re-evaluate a finished run and update its metrics.json.

    python scripts/evaluate.py runs/vae
    python scripts/evaluate.py runs/vae --iwae-samples 1000
    python scripts/evaluate.py runs/vae --data-dir /new/place/of/fashion-mnist

Reads config.json and model.keras from the run directory, recomputes the metrics on the
test split (VAEs: −ELBO, its terms, the importance-weighted −log p(x) with K samples,
active units, amortization gap; nats per image) and replaces metrics.json atomically,
keeping keys it does not recompute (training time, epochs). The test images are read from
the run's data source as saved in config.json; when the data moved, --data-dir (IDX
files), --images (a folder) or --npz (a file) says where they are now.
"""

from __future__ import annotations

import argparse
import json
import sys

from hml_vae import cli
from hml_vae.runs import check_finished, check_writable


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run directory written by scripts/train.py")
    parser.add_argument("--iwae-samples", type=cli.positive_int,
                        help="K of the importance-weighted log p(x) (default: the run's)")
    cli.add_data_location_arguments(parser)
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    check_finished(args.run_dir)
    check_writable(args.run_dir)  # before the evaluation, not when saving its result

    from hml_vae.training import evaluate_run

    metrics = evaluate_run(args.run_dir, args.iwae_samples, **cli.data_locations(args))
    print(json.dumps(metrics, indent=2, sort_keys=True))


def console() -> int:
    """The ``hml-vae-evaluate`` command."""
    return cli.run_main(main)


if __name__ == "__main__":
    sys.exit(console())
