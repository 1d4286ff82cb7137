"""TF Serving's model config file (``models.config``), read and written with its own
protobuf (``tensorflow_serving.config.model_server_config_pb2``) in text format.

Entries other than the exported model's are kept as they are (their version policies and
labels included); the exported model's entry gets its ``base_path`` and, with a label, a
version label. The text format has no place for comments in the message, so the comment
lines at the top of the file are kept and comments inside entries are not.

Example::

    model_config_list {
      config {
        name: "fashion_vae"
        base_path: "/models/fashion_vae"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1 versions: 2 } }
        version_labels { key: "stable" value: 1 }
        version_labels { key: "canary" value: 2 }
      }
    }
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS_CONFIG = "models.config"


class ModelsConfigError(ValueError):
    """models.config cannot be read, or an entry points at something that does not exist."""


def _protos():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    return text_format, model_server_config_pb2


def parse_models_config(text: str, path: Path | str = MODELS_CONFIG):
    """``text`` as a ``ModelServerConfig`` (empty for an empty text).

    Raises:
        ModelsConfigError: not a text-format ModelServerConfig, or one listing models in
            another way than ``model_config_list``.
    """
    text_format, model_server_config_pb2 = _protos()
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ModelsConfigError(
            f"{path} is not a TF Serving model config ({error}); fix or move it, then "
            f"export again. It was left as it is.") from None
    if config.WhichOneof("config") == "custom_model_config":
        raise ModelsConfigError(f"{path} holds a custom_model_config, not a "
                                f"model_config_list this exporter can update; it was left "
                                f"as it is.")
    names = [entry.name for entry in config.model_config_list.config]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelsConfigError(f"{path} lists the models {duplicates} more than once, which "
                                f"TF Serving refuses; fix it, then export again.")
    return config


def read_models_config(path: Path):
    """(the ``ModelServerConfig`` in ``path`` or an empty one, the comment lines at its
    top).

    Raises:
        ModelsConfigError: the file cannot be read or parsed.
    """
    _, model_server_config_pb2 = _protos()
    if not path.exists():
        return model_server_config_pb2.ModelServerConfig(), []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ModelsConfigError(f"cannot read {path}: {error}; fix or move it, then export "
                                f"again.") from None
    header = []
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            break
        header.append(line)
    return parse_models_config(text, path), header


def format_models_config(config, header=()) -> str:
    """The text of a models.config: ``header`` comment lines, then ``config``."""
    text_format, _ = _protos()
    body = text_format.MessageToString(config, as_utf8=True)
    return "".join(f"{line}\n" for line in header) + body


def served_versions(entry, versions: list[int]) -> set[int]:
    """The versions among ``versions`` TF Serving serves under ``entry``'s policy."""
    policy = entry.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return set(versions)
    if kind == "specific":
        return set(policy.specific.versions) & set(versions)
    count = policy.latest.num_versions if kind == "latest" else 1
    return set(sorted(versions)[-max(count, 1):])


def check_labels(entry, versions: list[int], model_dir: Path, path: Path) -> None:
    """ModelsConfigError when a label of ``entry`` points at a version not in
    ``versions`` (those of ``model_dir``, with the one being exported)."""
    for label, version in sorted(entry.version_labels.items()):
        if version not in versions:
            on_disk = ", ".join(map(str, versions)) or "none"
            raise ModelsConfigError(
                f"label {label!r} of model {entry.name!r} in {path} points at version "
                f"{version}, which is not in {model_dir} (versions: {on_disk}); point it "
                f"at an exported version or remove it. Nothing was exported.")


def updated_models_config(config, name: str, base_path: str, version: int,
                          versions: list[int], label: str | None = None):
    """A copy of ``config`` whose entry for ``name`` serves ``base_path``.

    Args:
        config: a ``ModelServerConfig``.
        name, base_path: the exported model and where the server sees it.
        version: the version being exported.
        versions: the model's versions once the export is published.
        label: a version label (``stable``, ``canary``) to point at ``version``. TF Serving
            serves a label only if its version is served, so a ``specific`` policy gets
            ``version`` added, and a ``latest`` policy that would leave a labelled version
            out becomes ``specific`` with every labelled version and ``version``.

    Returns:
        (the new config, notes on what changed besides base_path, for the user).
    """
    new = type(config)()
    new.CopyFrom(config)
    entries = new.model_config_list.config
    entry = next((entry for entry in entries if entry.name == name), None)
    if entry is None:
        entry = entries.add(name=name, model_platform="tensorflow")
    entry.base_path = base_path
    if not entry.model_platform and not entry.model_type:
        entry.model_platform = "tensorflow"
    notes = []
    if label is None:
        return new, notes
    entry.version_labels[label] = version
    policy = entry.model_version_policy
    labelled = set(entry.version_labels.values())
    if policy.WhichOneof("policy_choice") == "specific":
        if version not in policy.specific.versions:
            policy.specific.versions.append(version)
            notes.append(f"version {version} added to the specific version policy")
    elif not labelled <= served_versions(entry, versions):
        wanted = sorted(labelled | {version})
        policy.Clear()
        policy.specific.versions.extend(wanted)
        notes.append(f"version policy set to specific {wanted}, so that every labelled "
                     f"version is served")
    return new, notes


class StagedConfig:
    """A new models.config written beside the old one, to be published (renamed over it)
    or discarded."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            self.temporary.write_text(text)
            parse_models_config(self.temporary.read_text(), path)  # what the server reads
        except OSError as error:
            self.discard()
            raise ModelsConfigError(f"cannot write {path}: {error}") from None

    def publish(self) -> Path:
        os.replace(self.temporary, self.path)
        return self.path

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)


def plan_models_config(base: Path, name: str, serving_base: str, version: int,
                       versions: list[int], label: str | None = None):
    """Reads and checks ``base/models.config`` and returns its update, without writing.

    Args:
        base: the export base directory (``saved_models``).
        serving_base: where the server sees ``base``: ``/models`` for the Docker image run
            with ``-v $PWD/saved_models:/models``; an absolute host path for a native
            ``tensorflow_model_server``.
        version, versions, label: as :func:`updated_models_config`.

    Returns:
        (the file's path, its new text, notes on what changed besides base_path).

    Raises:
        ModelsConfigError: the existing file is corrupt, or a label of the model's entry
            points at a missing version.
    """
    path = base / MODELS_CONFIG
    if path.exists() and not path.is_file():
        raise ModelsConfigError(f"{path} is not a file; move it away, then export again.")
    config, header = read_models_config(path)
    base_path = f"{serving_base.rstrip('/')}/{name}"
    new, notes = updated_models_config(config, name, base_path, version, versions, label)
    for entry in new.model_config_list.config:
        if entry.name == name:
            check_labels(entry, versions, base / name, path)
    return path, format_models_config(new, header), notes


def write_models_config(base: Path, name: str, serving_base: str = "/models",
                        version: int = 1, label: str | None = None) -> Path:
    """Adds or updates ``name`` in ``base/models.config`` at once (atomically); returns its
    path. :func:`hml_vae.export.export_run` publishes it with the version instead."""
    from hml_vae.export.versions import existing_versions

    versions = sorted(set(existing_versions(base / name)) | {version})
    path, text, _ = plan_models_config(base, name, serving_base, version, versions, label)
    return StagedConfig(path, text).publish()
