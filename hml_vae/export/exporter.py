"""``export_run``: a finished run directory -> ``<base>/<name>/<version>/`` (+ models.config).

Everything that can be checked is checked before anything is published: the name and
label, the run, the base directory, the version, the existing models.config and its
labels. The SavedModel and the new models.config are then written beside their final
places and renamed into place together; if a step fails after the version was renamed, it
is removed again (or the version it replaced put back) and the error says so.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

from hml_vae.export import serving_config, versions
from hml_vae.export.signatures import build_archive, expected_signatures
from hml_vae.runs import load_run

METADATA_FILE = Path("assets.extra") / "hml_vae_export.json"


def export_metadata(run, models, version: int, image_signatures: bool = True) -> dict:
    """What the SavedModel was made from; kept in ``assets.extra`` (TF Serving ignores it)."""
    from hml_vae import __version__

    return {
        "run_dir": str(Path(run.directory).resolve()),
        "family": run.config.model,
        "variational": models.variational,
        "image_shape": list(models.image_shape),
        "latent_dim": models.latent_dim,
        "likelihood": models.likelihood if models.variational else None,
        "signatures": sorted(expected_signatures(models, image_signatures)),
        "version": version,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "hml_vae_version": __version__,
    }


def read_metadata(savedmodel_dir: str | Path) -> dict | None:
    """The export metadata of a SavedModel written by :func:`export_run`, or None (also
    for an unreadable file: the metadata is informative only)."""
    path = Path(savedmodel_dir) / METADATA_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where an export went: the version directory, the version, the config file (if
    written) and notes on what changed in it besides the model's base_path."""

    path: Path
    version: int
    models_config: Path | None
    notes: tuple[str, ...] = ()


def export_run(run_dir: str | Path, name: str, base: str | Path = "saved_models",
               version: int | None = None, overwrite: bool = False,
               models_config: bool = False, serving_base: str = "/models",
               label: str | None = None, image_signatures: bool = True) -> ExportResult:
    """Exports a finished run as ``base/name/version`` for TF Serving.

    Args:
        run_dir: a finished run directory (``scripts/train.py --output``).
        name: the served model's name (``/v1/models/NAME``); no separators or spaces.
        base: the directory holding one directory per served model.
        version: the integer version; default the next free one.
        overwrite: replace an existing ``version``.
        models_config: also add or update ``name`` in ``base/models.config``.
        serving_base: where the server sees ``base`` (see
            :func:`hml_vae.export.serving_config.stage_models_config`).
        label: a version label (``stable``, ``canary``) pointing at this version in
            models.config (implies ``models_config``).
        image_signatures: also write the signatures taking PNG/JPEG files and uint8
            pixels (default).

    Returns:
        An :class:`ExportResult`.

    Raises:
        RunError: ``run_dir`` is missing or not a finished run.
        ValueError: a bad name or label, an existing version, a base that cannot be
            written, a corrupt models.config or a label of it pointing at a missing
            version (:class:`~hml_vae.export.serving_config.ModelsConfigError`); nothing
            is written then.
        ExportError: a step failed after writing started; the message says what was
            removed.
    """
    versions.check_name(name)
    if label is not None:
        versions.check_name(label, "label", "--label canary")
        models_config = True
    run = load_run(run_dir)  # RunError before anything is created
    base = Path(base)
    model_dir = versions.check_base(base, name)
    on_disk = versions.existing_versions(model_dir)
    version = versions.check_version(
        (on_disk[-1] + 1 if on_disk else 1) if version is None else version, model_dir,
        overwrite)
    served = sorted(set(on_disk) | {version})
    planned_config = None
    if models_config:  # read and checked before anything is written
        planned_config = serving_config.plan_models_config(base, name, serving_base,
                                                           version, served, label)
    models = run.load_models()
    archive = build_archive(models, image_signatures)
    metadata = export_metadata(run, models, version, image_signatures)

    created = not model_dir.exists()
    model_dir = versions.prepare_model_dir(base, name)
    staged = versions.StagedVersion(model_dir, version, overwrite)
    staged_config, notes = None, ()
    try:
        versions.remove_stale_temporaries(model_dir)

        def write(directory: Path) -> None:
            archive.write_out(str(directory), verbose=False)
            (directory / METADATA_FILE).parent.mkdir(exist_ok=True)
            (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")

        staged.write(write)
        if planned_config is not None:
            config_path, text, notes = planned_config
            staged_config = serving_config.StagedConfig(config_path, text)
        path = staged.publish()
        if staged_config is not None:
            staged_config.publish()
    except BaseException as error:
        what = staged.rollback()
        if staged_config is not None:
            staged_config.discard()
        if created and model_dir.exists() and not any(model_dir.iterdir()):
            model_dir.rmdir()  # leave the base as it was: no empty model directory
        if isinstance(error, ValueError):  # a user's mistake found late: exit code 2
            raise type(error)(f"{error} ({what})") from None
        if isinstance(error, Exception):
            raise versions.ExportError(f"exporting {run_dir} as {name} failed: {error}; "
                                       f"{what}.") from error
        raise
    staged.commit()
    config_file = staged_config.path if staged_config is not None else None
    return ExportResult(path, version, config_file, tuple(notes))
