"""Exceptions the scripts turn into one-line messages (kept free of heavy imports)."""


class RunError(RuntimeError):
    """A run that cannot start or did not finish; the message says what to do."""
