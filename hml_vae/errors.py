"""The errors hml_vae raises for what a user can fix, and the exit code of each.

Library code raises them; :func:`hml_vae.cli.run_main` turns each into one line on stderr
and its exit code (``--debug`` shows the traceback instead). Each carries what it is about:
the file (``path``) or the flag (``flag``), and its message names it.

=====================  ====  ==========================================================
error                  exit  raised for
=====================  ====  ==========================================================
ConfigError            2     a flag or config.json value no run can use
DataError              2     a data set that is missing, corrupt or asked for wrongly
ServingInputError      2     a request to an exported model with a wrong input
RunDirectoryError      1     a run directory that is missing, unfinished or corrupt, or
                             an output that cannot be written
RunError               1     a run that cannot start or did not finish (diverged)
Interrupted            128+N SIGINT/SIGTERM (signal N) after a checkpointed epoch
=====================  ====  ==========================================================

This module imports nothing heavy, so that any script can catch them cheaply.
"""

from __future__ import annotations

import os


def one_line(error: BaseException) -> str:
    """An error's message on one line (messages that list places join them)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


class HmlVaeError(Exception):
    """A mistake the user can fix; the message says what was wrong and what to do.

    Args:
        message: one or more sentences; the file is prefixed when the message does not
            name it already (a config value's message names its key or flag itself).
        path: the file or directory concerned, if any.
        flag: the command-line flag (or config key) concerned, if any.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: str | os.PathLike | None = None,
                 flag: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.flag = flag
        if self.path and self.path not in message:
            message = f"{self.path}: {message}"
        super().__init__(message)


class ConfigError(HmlVaeError, ValueError):
    """A flag or config value that no run can use (``flag`` names it; ``path`` the
    config.json it came from, when it came from one)."""


class DataError(HmlVaeError, ValueError):
    """A data set that is missing, corrupt or asked for in a way we cannot serve."""


class ServingInputError(HmlVaeError, ValueError):
    """A request to an exported model whose input has a wrong shape, rank, dtype or
    value (``flag`` names the input)."""


class RunError(HmlVaeError, RuntimeError):
    """A run that cannot start or did not finish; the message says what to do."""

    exit_code = 1


class RunDirectoryError(RunError):
    """A run directory (``path``) that is missing, unfinished, corrupt or cannot be
    written."""


class Interrupted(RunError):
    """Training stopped on SIGINT/SIGTERM after a finished (checkpointed) epoch.

    Attributes:
        exit_code: 128 + the signal number, the shell's convention for a signalled exit.
    """

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + int(signal_number)
