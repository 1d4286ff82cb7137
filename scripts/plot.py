"""Redraw the figures and report.md of a finished run, without retraining.

    python scripts/plot.py runs/stacked

Writes RUN_DIR/figures/*.png and RUN_DIR/report.md from the run's saved models, config
and history (the test images are read again from the run's data source).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any checkout

from hml_vae import cli  # noqa: E402
from hml_vae.runs import load_run  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run directory")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    run = load_run(args.run_dir)

    from hml_vae.data import load_dataset  # noqa: I001  (TensorFlow only once the run is valid)
    from hml_vae.plots import plot_run

    config = dataclasses.replace(run.config, make_plots=True)
    data = load_dataset(config.dataset, config.data_dir, config.limit, config.binarize,
                        config.seed, config.download)
    failures = plot_run(run.directory, config, run.load_models(), data, run.history,
                        run.metrics)
    for name, why in failures.items():
        print(f"warning: figure {name} could not be made: {why}", file=sys.stderr)
    figures = sorted(path.name for path in (run.directory / "figures").glob("*.png"))
    print(f"figures: {', '.join(figures)}")
    print(f"report: {run.directory / 'report.md'}")


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
