"""Exceptions the scripts turn into one-line messages (kept free of heavy imports)."""


class RunError(RuntimeError):
    """A run that cannot start or did not finish; the message says what to do."""


class Interrupted(RunError):
    """Training stopped on SIGINT/SIGTERM after a finished (checkpointed) epoch.

    Attributes:
        exit_code: 128 + the signal number, the shell's convention for a signalled exit.
    """

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + int(signal_number)
