"""Greedy layer-wise pretraining: an alias of ``scripts/train.py --model greedy``.

    python scripts/pretrain_greedy.py --codings 100,30 --output runs/greedy
    python scripts/pretrain_greedy.py --codings 100,30 --fine-tune-epochs 10 --output RUN
    python scripts/pretrain_greedy.py --preset tiny --limit 1000 --output RUN
    python scripts/pretrain_greedy.py --strategy mirrored --cpu-replicas 2 --output RUN

``--codings 100,30`` (one coding size per level) stands for ``--hidden 100 --latent-dim 30``;
every other flag is scripts/train.py's and is passed on unchanged (``--help`` shows them).
--epochs trains each level. The run directory is scripts/train.py's, plus
history_level_<k>.json per level; the same command after an interruption resumes inside the
level it stopped in.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from hml_vae import cli

TRAIN_SCRIPT = Path(__file__).resolve().with_name("train.py")
# Flags the alias sets itself: passing them too would say two things at once.
OWN_FLAGS = ("--model", "--hidden", "--latent-dim")


def train_arguments(argv: list[str]) -> list[str]:
    """scripts/train.py's arguments for this script's ``argv``.

    Example:
        >>> train_arguments(["--codings", "100,30", "--output", "RUN"])
        ['--model', 'greedy', '--hidden', '100', '--latent-dim', '30', '--output', 'RUN']

    Raises:
        SystemExit: (argparse, exit code 2) bad --codings, or a flag the alias sets itself.
    """
    parser = argparse.ArgumentParser(
        prog=Path(__file__).name, add_help=False, allow_abbrev=False,
        description="scripts/train.py --model greedy, with --codings")
    parser.add_argument("--codings", type=cli.int_list,
                        help="coding size of each level, e.g. 100,30 (default: 100,30)")
    args, rest = parser.parse_known_args(argv)
    given = sorted({flag for argument in rest for flag in OWN_FLAGS
                    if argument == flag or argument.startswith(flag + "=")})
    if given:
        parser.error(f"{', '.join(given)}: this script always trains --model greedy with the "
                     f"levels of --codings (e.g. --codings 100,30); pass the other flags only, "
                     f"or use scripts/train.py.")
    levels = []
    if args.codings is not None:
        if len(args.codings) < 2:
            parser.error(f"--codings {args.codings[0]}: greedy pretraining stacks at least "
                         f"two levels; pass e.g. --codings 100,30.")
        *hidden, latent_dim = args.codings
        levels = ["--hidden", ",".join(map(str, hidden)), "--latent-dim", str(latent_dim)]
    return ["--model", "greedy", *levels, *rest]


def main(argv: list[str] | None = None) -> None:
    """Runs scripts/train.py with :func:`train_arguments`; exits with its exit code."""
    arguments = train_arguments(sys.argv[1:] if argv is None else list(argv))
    if "-h" in arguments or "--help" in arguments:  # then train.py's help, and exit
        print(__doc__)
    sys.argv = [str(TRAIN_SCRIPT), *arguments]
    runpy.run_path(str(TRAIN_SCRIPT), run_name="__main__")


def console() -> int:
    """The ``hml-vae-pretrain-greedy`` command (train.py exits with its own code)."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(console())
