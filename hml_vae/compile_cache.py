"""A persistent XLA compilation cache, so an unchanged training step compiles once per
machine rather than once per run.

TensorFlow reads ``--tf_xla_persistent_cache_directory`` from ``TF_XLA_FLAGS`` when it first
compiles a cluster, saves each compiled executable there (written to a temporary file and
renamed, so a killed run leaves no partial entry) and loads it in later processes whose step
has the same signature. Where the cache lives:

- ``HML_VAE_COMPILE_CACHE=DIR``: that directory;
- ``HML_VAE_COMPILE_CACHE=off``: no cache;
- otherwise ``$XDG_CACHE_HOME/hml_vae/xla`` (``~/.cache/hml_vae/xla``).

A directory that cannot be created or written turns the cache off rather than failing a run:
TensorFlow would otherwise stop the first compiled step with a file-system error.
"""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT_VARIABLE = "HML_VAE_COMPILE_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"


def default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hml_vae" / "xla"


def requested_directory() -> Path | None:
    """The directory the environment asks for, or None when the cache is off."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value.lower() in ("off", "0", "false", "none"):
        return None
    return Path(value).expanduser() if value else default_directory()


def usable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


def enable() -> Path | None:
    """Point XLA's persistent cache at the requested directory; returns it (None: off).

    A ``TF_XLA_FLAGS`` that already names a cache directory is the user's choice and is
    left alone.
    """
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if FLAG in flags:
        return None
    directory = requested_directory()
    if directory is None or not usable(directory):
        return None
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={directory}".strip()
    return directory
