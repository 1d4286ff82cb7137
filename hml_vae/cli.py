"""Shared pieces of the command-line scripts: argument types and the error boundary."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) hides the messages
# users need; keep warnings and errors. Must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def number_type(convert: Callable[[str], float], expected: str,
                accept: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse ``type`` that converts with ``convert`` and accepts what ``accept`` says,
    with an error naming what was expected (``not value > 0`` also rejects NaN)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    parse.__name__ = expected  # argparse names the type in its messages
    return parse


positive_int = number_type(int, "a positive integer", lambda value: value > 0)
positive_float = number_type(float, "a positive number", lambda value: value > 0)
non_negative_int = number_type(int, "an integer >= 0", lambda value: value >= 0)
non_negative_float = number_type(float, "a number >= 0", lambda value: value >= 0)


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


def name_list(choices, what: str) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type`` for a comma-separated subset of ``choices``:
    ``"vae,stacked"`` -> ("vae", "stacked"); unknown or no names are an error naming
    ``what`` they should be and the choices."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [name for name in names if name not in choices]
        if not names or unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {unknown or [text]}; choose from {','.join(choices)}")
        return names

    parse.__name__ = f"comma-separated {what}"
    return parse


def run_main(main: Callable[[], object]) -> int:
    """Runs a script's main; a user's mistake becomes one line on stderr and exit code 2
    (1 for a failed run) instead of a traceback."""
    from hml_vae.data import DataError
    from hml_vae.errors import Interrupted, RunError

    try:
        main()
    except (DataError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as error:  # before RunError: it is one, with its own exit code
        print(f"interrupted: {error}", file=sys.stderr)
        return error.exit_code
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last finished "
              "epoch.", file=sys.stderr)
        return 130
    return 0
