"""Shared pieces of the command-line scripts: argument types and the error boundary."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) hides the messages
# users need; keep warnings and errors. Must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """``"150,100"`` -> (150, 100): layer sizes."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 150,100, got {text!r}"
        ) from None
    if any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return values


def run_main(main: Callable[[], object]) -> int:
    """Runs a script's main; a user's mistake becomes one line on stderr and exit code 2
    (1 for a failed run) instead of a traceback."""
    from hml_vae.data import DataError  # NumPy only; hml_vae.training imports TensorFlow

    try:
        main()
    except (DataError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        # Imported only here, so a bad flag is reported before TensorFlow starts (and
        # before its start-up log lines bury the one-line error).
        from hml_vae.training import RunError

        if not isinstance(error, RunError):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last finished "
              "epoch.", file=sys.stderr)
        return 130
    return 0
