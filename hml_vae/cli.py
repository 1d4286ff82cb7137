"""Shared pieces of the command-line scripts: argument types, the flags generated from the
config's fields, and the error boundary.

Every :class:`hml_vae.config.Config` field (except those the run derives) is a flag of
``scripts/train.py``: its name, type, choices, help and default come from the field, so
they are written once, in the config.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import typing
from collections.abc import Callable

from hml_vae.errors import ConfigError, one_line


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
positive_float = number_type(float, "a positive number",
                             lambda value: value > 0 and math.isfinite(value))
non_negative_int = number_type(int, "an integer >= 0", lambda value: value >= 0)
non_negative_float = number_type(float, "a number >= 0",
                                 lambda value: value >= 0 and math.isfinite(value))
finite_float = number_type(float, "a number", math.isfinite)


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


def float_list(text: str) -> tuple[float, ...]:
    """``"5e-4,5e-3"`` -> (0.0005, 0.005): one positive number per level."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive numbers such as 5e-4,5e-3, got {text!r}"
        ) from None
    if not all(math.isfinite(value) and value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def image_size(text: str) -> tuple[int, int]:
    """``"32,32"`` (or ``"32x32"``) -> (32, 32): height and width."""
    parts = text.replace("x", ",").replace("×", ",").split(",")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 8:
        raise argparse.ArgumentTypeError(
            f"expected H,W (two whole numbers of at least 8) such as 32,32, got {text!r}")
    return size


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


# --- Flags generated from the config ------------------------------------------------------

# Every script's flag that shows an error's traceback (read by run_main).
DEBUG_FLAG = "--debug"
# Flags of scripts/train.py that are not config fields: what to run, not how.
RUN_FLAGS = ("--preset", "--config", "--output", "--restart", DEBUG_FLAG)


def _argument_type(field: dataclasses.Field, annotation) -> Callable | None:
    """The argparse ``type`` for a config field, from its annotation and metadata."""
    text = str(annotation).replace("<class '", "").replace("'>", "")
    if "tuple[int, int]" in text:
        return image_size
    if "tuple[int" in text:
        return int_list
    if "tuple[float" in text:
        return float_list
    if text.startswith("int"):
        if field.metadata.get("positive"):
            return positive_int
        return non_negative_int if field.metadata.get("non_negative") else int
    if text.startswith("float"):
        if field.metadata.get("positive"):
            return positive_float
        return non_negative_float if field.metadata.get("non_negative") else finite_float
    return str


def _default_text(field: dataclasses.Field) -> str:
    from hml_vae import families

    default = field.default
    if default is None:
        shown = field.metadata.get("none", "none")
    elif isinstance(default, tuple):
        shown = ",".join(map(str, default))
    else:
        shown = str(default).lower() if isinstance(default, bool) else str(default)
    recipes = {name: families.get(name).presets["default"][field.name]
               for name in families.names() if field.name in families.get(name).presets["default"]}
    if recipes:
        shown += "; the book's recipe: " + ", ".join(
            f"{name} {','.join(map(str, value)) if isinstance(value, tuple) else value}"
            for name, value in recipes.items())
    return shown


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per CLI field of the config, in groups: data, training, family options."""
    from hml_vae import config as config_module
    from hml_vae import families

    hints = typing.get_type_hints(config_module.Config)
    groups = {
        "common": parser.add_argument_group("what to train, on what, how"),
        "family": parser.add_argument_group(
            "family options (each applies to the families named in its help)"),
    }
    for field in config_module.fields():
        if not field.metadata.get("cli", True):
            continue
        flag = config_module.flag_name(field)
        help_text = field.metadata["help"]
        if field.metadata.get("between"):
            help_text += " in ({}, {})".format(*field.metadata["between"])
        if field.metadata.get("family_option"):
            help_text += f" [{', '.join(families.families_with_option(field.name))}]"
        help_text = f"{help_text} (default: {_default_text(field)})".replace("%", "%%")
        group = groups["family" if field.metadata.get("family_option") else "common"]
        if hints[field.name] in (bool, bool | None):
            group.add_argument(flag, dest=field.name, default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
            continue
        choices = config_module.field_choices(field)
        group.add_argument(flag, dest=field.name, default=None, choices=choices,
                           type=_argument_type(field, hints[field.name]),
                           metavar=None if choices else flag[2:].upper().replace("-", "_"),
                           help=help_text)


def add_data_location_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say where a finished run's data are now (scripts/evaluate.py,
    scripts/plot.py): ``--data-dir``, ``--images``, ``--npz``, ``--download``. Each wins
    over the place saved in the run's config.json."""
    from hml_vae import config as config_module
    from hml_vae.training import DATA_LOCATIONS

    group = parser.add_argument_group(
        "where the run's data are now (default: where it was trained, from its config.json)")
    fields = {field.name: field for field in config_module.fields()}
    for name, flag in DATA_LOCATIONS.items():
        help_text = fields[name].metadata["help"].replace("%", "%%")
        if name == "download":
            group.add_argument(flag, dest=name, action="store_const", const=True,
                               default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, metavar=flag[2:].upper().replace("-", "_"),
                               help=help_text)


def data_locations(args: argparse.Namespace) -> dict:
    """The :func:`add_data_location_arguments` values given on the command line."""
    from hml_vae.training import DATA_LOCATIONS

    return {name: getattr(args, name) for name in DATA_LOCATIONS
            if getattr(args, name) is not None}


def config_flags() -> dict[str, str]:
    """{flag: config field} of every generated flag."""
    from hml_vae import config as config_module

    return {config_module.flag_name(field): field.name for field in config_module.fields()
            if field.metadata.get("cli", True)}


def train_parser(description: str = "Train one model, evaluate it and write its run "
                 "directory.") -> argparse.ArgumentParser:
    """``scripts/train.py``'s parser: the run flags and one flag per config field."""
    from hml_vae import families

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", choices=families.presets(),
                        help="default: the book's recipe; tiny: seconds on a CPU (default: "
                        "default)")
    parser.add_argument("--config", type=str, metavar="RUN/config.json",
                        help="run a saved config again; flags given here override it")
    parser.add_argument("--output", required=True, help="run directory to create")
    parser.add_argument("--restart", action="store_true",
                        help="discard the interrupted run in OUTPUT.incomplete (its "
                        "checkpoints and history) and start over")
    add_debug_flag(parser)
    add_config_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace):
    """The run's config from parsed :func:`train_parser` arguments.

    Raises:
        ConfigError: no --model and no --config, or values no run can use.
    """
    from hml_vae.config import Config, make_config

    values = {key: value for key, value in vars(args).items()
              if key not in ("preset", "config", "output", "restart", "debug")}
    base = None
    if args.config is not None:
        base = Config.load(args.config)
        if args.preset is not None:
            raise ConfigError("--preset and --config both give the starting values; pass "
                              "one of them.", flag="--preset")
    model = values.pop("model") or (base.model if base is not None else None)
    if model is None:
        raise ConfigError("no model given: pass --model NAME (see --help for the families) "
                          "or --config RUN/config.json.", flag="--model")
    return make_config(model, args.preset or "default", base=base, **values)


# --- The error boundary ---------------------------------------------------------------------

# OSErrors about a path the user gave: their mistake, like a bad flag (exit 2). Any other
# OSError (a full disk, a lost mount) is a failed command (exit 1).
USER_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                  PermissionError)


def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--debug`` (read by :func:`run_main`) to a script's parser, for its --help."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="on an error, show its traceback, not one line")
    return parser


def debug_requested(argv: list[str]) -> bool:
    """Whether ``--debug`` is among a script's own arguments (those before ``--``)."""
    own = argv[: argv.index("--")] if "--" in argv else argv
    return DEBUG_FLAG in own


def os_error_line(error: OSError) -> str:
    """``PATH: what is wrong`` for an OSError about a file, else its message."""
    if error.filename is None:
        return one_line(error)
    names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name)
    return f"{names}: {error.strerror or one_line(error)}"


def error_line_and_code(error: BaseException) -> tuple[str, int] | None:
    """(the one line to print, the exit code) for a user's mistake or a failed run, None
    for an error that is a bug (its traceback is shown)."""
    from hml_vae.errors import HmlVaeError, Interrupted

    if isinstance(error, Interrupted):
        return f"interrupted: {one_line(error)}", error.exit_code
    if isinstance(error, HmlVaeError):
        return f"error: {one_line(error)}", error.exit_code
    if isinstance(error, OSError):
        return f"error: {os_error_line(error)}", 2 if isinstance(error, USER_OS_ERRORS) else 1
    if isinstance(error, ValueError):  # the library's checks of values it was given
        return f"error: {one_line(error)}", 2
    if isinstance(error, KeyboardInterrupt):
        return ("interrupted; run the same command again to resume from the last finished "
                "epoch."), 130
    return None


def run_main(main: Callable[[], object]) -> int:
    """Runs a script's main and returns its exit code: 0, or for a user's mistake or a
    failed run one line on stderr and the code :mod:`hml_vae.errors` lists (2 for a bad
    flag, config, data set or path; 1 for a run directory or a run that failed; 128 + N
    for signal N). With ``--debug`` among the script's arguments the traceback is shown
    above that line. Other exceptions are bugs and keep their traceback."""
    from hml_vae.backends import require_tensorflow

    debug = debug_requested(sys.argv[1:])
    try:
        require_tensorflow("this script")
        main()
    except (Exception, KeyboardInterrupt) as error:
        handled = error_line_and_code(error)
        if handled is None:
            raise
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        line, code = handled
        print(line, file=sys.stderr)
        return code
    return 0
