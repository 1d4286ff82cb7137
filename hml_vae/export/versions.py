"""Model names, version directories and publishing a version atomically (no TensorFlow).

TF Serving watches ``<base>/<name>/`` and serves integer version directories, loading new
ones while it runs. A version is therefore written in a hidden temporary directory beside
it (TF Serving ignores names that are not integers) and renamed into place only once the
whole export, models.config included, is ready; :class:`StagedVersion` also takes a
published version back when a later step fails.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from hml_vae.errors import RunError

TEMPORARY_PREFIX = ".incomplete-"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ExportError(RunError):
    """An export failed after it started writing; the message says what was left behind."""


def check_name(name: str, what: str = "model name", flag: str = "--name fashion_vae") -> str:
    """``name`` if it can be a TF Serving model name (or label) and a directory name, else
    ValueError.

    Args:
        name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit.
        what, flag: how the message calls it and an example flag.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} cannot be used: it must be letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit (no path separators or spaces), e.g. {flag}."
        )
    return name


def existing_versions(model_dir: Path) -> list[int]:
    """The integer version directories in ``model_dir`` (what TF Serving would serve)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(child.name) for child in model_dir.iterdir()
                  if child.is_dir() and child.name.isdigit())


def next_version(model_dir: Path) -> int:
    """One more than the highest existing version, or 1."""
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def check_version(version, model_dir: Path, overwrite: bool) -> int:
    """The version to write, or ValueError for a non-positive or (unless ``overwrite``)
    existing one."""
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        raise ValueError(f"version must be a positive integer (TF Serving's version "
                         f"directories are 1, 2, ...), got {version!r}.")
    if (model_dir / str(version)).exists() and not overwrite:
        raise ValueError(
            f"{model_dir / str(version)} already exists. Leave out --version to write the "
            f"next free one ({next_version(model_dir)}), or pass --overwrite to replace it."
        )
    return version


def check_base(base: Path, name: str) -> Path:
    """``base/name`` (not created); ValueError when it could not be created or written."""
    model_dir = base / name
    existing = next((path for path in (model_dir, base, *base.parents) if path.exists()),
                    None)
    if base.exists() and not base.is_dir():
        raise ValueError(f"the base directory {base} is a file; pass --base with a directory.")
    if existing is not None and not existing.is_dir():
        raise ValueError(f"cannot create {model_dir}: {existing} is a file. Pass a --base "
                         f"directory you can write to.")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create {model_dir}: {existing} is not writable. Pass a "
                         f"--base directory you can write to.")
    return model_dir


def prepare_model_dir(base: Path, name: str) -> Path:
    """Creates ``base/name`` if needed; ValueError when the base cannot be written to."""
    model_dir = check_base(base, name)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create {model_dir}: {error.strerror}. Pass a --base "
                         f"directory you can write to.") from None
    if not os.access(model_dir, os.W_OK | os.X_OK):
        raise ValueError(f"{model_dir} is not writable; pass a --base directory you can "
                         f"write to.")
    return model_dir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(model_dir: Path) -> list[Path]:
    """Removes temporary directories left by exports whose process died (SIGKILL, power
    loss); a live export's directory is left alone. Returns what was removed."""
    removed = []
    for child in model_dir.glob(TEMPORARY_PREFIX + "*"):
        pid = child.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


class StagedVersion:
    """A version written beside its final place, then published, then committed.

    ``write`` fills a hidden temporary directory; ``publish`` renames it to
    ``model_dir/version`` (keeping a replaced version aside); ``commit`` deletes the replaced
    version; ``rollback`` undoes whatever was done: before ``publish`` the temporary
    directory is removed, after it the new version is removed and a replaced one put back.
    ``rename`` within one directory is atomic on POSIX file systems, so a server sees the
    old version or the new one, never half of one.
    """

    def __init__(self, model_dir: Path, version: int, overwrite: bool = False):
        self.model_dir, self.version, self.overwrite = model_dir, version, overwrite
        self.final = model_dir / str(version)
        self.temporary = model_dir / f"{TEMPORARY_PREFIX}{version}-{os.getpid()}"
        self.replaced = model_dir / f"{TEMPORARY_PREFIX}replaced-{version}-{os.getpid()}"
        self.published = False

    def write(self, write: Callable[[Path], None]) -> None:
        """Calls ``write(directory)`` on the temporary directory."""
        shutil.rmtree(self.temporary, ignore_errors=True)
        write(self.temporary)

    def publish(self) -> Path:
        """Renames the written version into place; returns it."""
        if self.final.exists():
            if not self.overwrite:  # someone wrote this version while we were exporting
                raise ValueError(f"{self.final} appeared during the export; nothing was "
                                 f"changed. Export again to get the next free version.")
            self.final.rename(self.replaced)
            try:
                self.temporary.rename(self.final)
            except BaseException:
                self.replaced.rename(self.final)  # put the old version back
                raise
        else:
            self.temporary.rename(self.final)
        self.published = True
        return self.final

    def commit(self) -> None:
        """Deletes the version this one replaced."""
        shutil.rmtree(self.replaced, ignore_errors=True)

    def rollback(self) -> str:
        """Undoes the export; returns what happened to the version, for the message."""
        shutil.rmtree(self.temporary, ignore_errors=True)
        if not self.published:
            return f"version {self.version} was not published"
        shutil.rmtree(self.final, ignore_errors=True)
        self.published = False
        if self.replaced.exists():
            self.replaced.rename(self.final)
            return f"{self.final} was put back to the version it replaced"
        return f"the new version {self.final} was removed"


def write_atomically(model_dir: Path, version: int, write: Callable[[Path], None],
                     overwrite: bool = False) -> Path:
    """Writes a version with ``write(directory)`` and publishes it only if ``write``
    returns; on any exception (KeyboardInterrupt included) nothing is left behind.

    Returns:
        The version directory.
    """
    staged = StagedVersion(model_dir, version, overwrite)
    try:
        staged.write(write)
        path = staged.publish()
    except BaseException:
        staged.rollback()
        raise
    staged.commit()
    return path
