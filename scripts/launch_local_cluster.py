"""Train with --strategy multi_worker on this machine: N worker processes on 127.0.0.1.

    python scripts/launch_local_cluster.py --workers 2 -- --model vae --output runs/vae-mw
    python scripts/launch_local_cluster.py --workers 2 --timeout 600 -- --model vae \
        --preset tiny --limit 1000 --epochs 2 --output RUN

Everything after ``--`` goes to scripts/train.py in every worker (``--strategy
multi_worker`` is added). Each worker gets its own TF_CONFIG with free ports; worker 0 is
the chief and writes the run directory. Output lines are prefixed ``[worker i]``. If a
worker fails, the others are stopped and the exit code is non-zero. Ctrl-C (or SIGTERM)
stops every worker after the current epoch; run the same command again to resume.
"""

from __future__ import annotations

import argparse
import sys

from hml_vae import cli


def parse_args(argv: list[str]) -> argparse.Namespace:
    if "--" not in argv:
        raise ValueError(
            "put the scripts/train.py arguments after --, e.g. "
            "launch_local_cluster.py --workers 2 -- --model vae --output runs/vae"
        )
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     usage="%(prog)s [--workers N] [--timeout S] -- TRAIN_ARGS")
    parser.add_argument("--workers", type=cli.positive_int, default=2,
                        help="worker processes (default: 2)")
    parser.add_argument("--timeout", type=cli.positive_float,
                        help="stop every worker and fail after S seconds (default: no limit)")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv[:split])
    args.train_args = argv[split + 1:]
    if not args.train_args:
        raise ValueError("no scripts/train.py arguments after --; pass at least --model and "
                         "--output.")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from hml_vae.local_cluster import run_local_cluster

    return run_local_cluster(args.train_args, workers=args.workers, timeout=args.timeout)


def console() -> int:
    """The ``hml-vae-launch-local-cluster`` command: the workers' exit code."""
    exit_codes = []
    status = cli.run_main(lambda: exit_codes.append(main()))
    return status or (exit_codes[0] if exit_codes else 0)


if __name__ == "__main__":
    sys.exit(console())
