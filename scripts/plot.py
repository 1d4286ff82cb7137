"""Redraw the figures and report.md of a finished run, without retraining.

    python scripts/plot.py runs/stacked
    python scripts/plot.py runs/photos --images /new/place/of/photos

Writes RUN_DIR/figures/*.png and RUN_DIR/report.md from the run's saved models, config
and history (the test images are read again from the run's data source, or from where
--data-dir, --images or --npz say it is now).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hml_vae import api, cli
from hml_vae.runs import check_writable, load_run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run directory")
    cli.add_data_location_arguments(parser)
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    run = load_run(args.run_dir)
    check_writable(run.directory)
    failures = api.plot(run.directory, **cli.data_locations(args))
    for name, why in failures.items():
        print(f"warning: figure {name} could not be made: {why}", file=sys.stderr)
    figures = sorted(path.name for path in (run.directory / "figures").glob("*.png"))
    print(f"figures: {', '.join(figures)}")
    print(f"report: {run.directory / 'report.md'}")


def console() -> int:
    """The ``hml-vae-plot`` command."""
    return cli.run_main(main)


if __name__ == "__main__":
    sys.exit(console())
