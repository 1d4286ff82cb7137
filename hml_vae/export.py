"""SavedModels for TensorFlow Serving: versioned, written atomically, with named signatures.

:func:`export_run` turns a finished run directory into ``<base>/<name>/<version>/``, the
layout TensorFlow Serving watches (it serves the highest integer version and loads new
ones while running). The version is written in a hidden temporary directory beside it and
renamed into place only when complete, so a server never sees half a model.

Signatures (inputs -> outputs, all float32 unless said otherwise):

============== ================================== =========================================
name           inputs                             outputs
============== ================================== =========================================
serving_default ``images`` (batch, 28, 28)        ``reconstruction`` (batch, 28, 28)
encode         ``images`` (batch, 28, 28)         VAEs: ``z_mean``, ``z_log_var``
                                                  (batch, latent_dim); autoencoders:
                                                  ``coding`` (batch, latent_dim)
decode         VAEs: ``z``; autoencoders:         ``images`` (batch, 28, 28)
               ``coding`` (batch, latent_dim)
generate (VAE) ``count`` int32 (), ``seed`` int64 ``images`` (count, 28, 28) and the prior
               ()                                 draws ``z`` (count, latent_dim)
============== ================================== =========================================

Images are float32 pixels in [0, 1] of shape (batch, 28, 28) only: no (batch, 784), no
(batch, 28, 28, 1), no uint8 0-255. The signatures check shape and range in the graph
(TF Serving does not check a request against the signature), so such requests fail with
a message saying what is expected; :func:`check_request_images` checks them client-side.

Everything is deterministic: a VAE reconstructs from the posterior mean, and its decoder
outputs are pixel probabilities (Bernoulli decoders: the sigmoid of the
logits the Keras decoder returns) or means (Gaussian decoders), in [0, 1] for Bernoulli.
Autoencoder outputs are the models' linear outputs, not clipped to [0, 1].

Example:
    >>> result = export_run("runs/vae", name="vae", base="saved_models")
    >>> result.path
    PosixPath('saved_models/vae/1')
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hml_vae.runs import load_run

IMAGE_SHAPE = (28, 28)
# Largest ``count`` the generate signature accepts: a typo of a client must not make the
# server allocate gigabytes.
MAX_GENERATE_COUNT = 10_000
TEMPORARY_PREFIX = ".incomplete-"
METADATA_FILE = Path("assets.extra") / "hml_vae_export.json"
MODELS_CONFIG = "models.config"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Exported and Keras outputs agree to this (float32; graph vs eager kernels differ in the
# order of summation only).
ATOL = 1e-5
RTOL = 1e-4


# --- Names, versions and the base directory (no TensorFlow needed) ---------------------------


def check_name(name: str) -> str:
    """``name`` if it can be a TF Serving model name and a directory name, else ValueError.

    Args:
        name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"model name {name!r} cannot be used: it becomes a directory and the name in "
            f"/v1/models/NAME, so it must be letters, digits, '.', '_' or '-' starting "
            f"with a letter or digit (no path separators or spaces), e.g. --name fashion_vae."
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


def prepare_model_dir(base: Path, name: str) -> Path:
    """Creates ``base/name`` if needed; ValueError when the base cannot be written to."""
    if base.exists() and not base.is_dir():
        raise ValueError(f"the base directory {base} is a file; pass --base with a directory.")
    model_dir = base / name
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


def write_atomically(model_dir: Path, version: int, write: Callable[[Path], None],
                     overwrite: bool = False) -> Path:
    """Calls ``write(directory)`` on a hidden temporary directory in ``model_dir`` and
    renames it to ``model_dir/version`` only if ``write`` returns.

    TF Serving ignores directories whose names are not integers, so it never sees the
    temporary one; ``rename`` within one directory is atomic on POSIX file systems. On any
    exception (KeyboardInterrupt included) the temporary directory is removed.

    Returns:
        The version directory.
    """
    final = model_dir / str(version)
    temporary = model_dir / f"{TEMPORARY_PREFIX}{version}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        write(temporary)
        if final.exists():
            if not overwrite:  # someone wrote this version while we were exporting
                raise ValueError(f"{final} appeared during the export; nothing was changed. "
                                 f"Export again to get the next free version.")
            # Swap with two renames, so the version is missing only between them; the old
            # one is deleted after the new one is in place.
            replaced = model_dir / f"{TEMPORARY_PREFIX}replaced-{version}-{os.getpid()}"
            final.rename(replaced)
            try:
                temporary.rename(final)
            except BaseException:
                replaced.rename(final)  # put the old version back
                raise
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            temporary.rename(final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


# --- TF Serving's model config file -----------------------------------------------------------


def model_config_entry(name: str, base_path: str) -> str:
    """One ``config { ... }`` block of a ``model_config_list`` (text protobuf)."""
    return (f"  config {{\n    name: {json.dumps(name)}\n    base_path: {json.dumps(base_path)}\n"
            f"    model_platform: \"tensorflow\"\n  }}\n")


def _config_blocks(text: str) -> list[str]:
    """The ``config { ... }`` blocks of a model config file, verbatim, in order."""
    blocks, position = [], 0
    for match in re.finditer(r"\bconfig\s*\{", text):
        if match.start() < position:
            continue  # inside the previous block
        depth, index = 0, match.end() - 1
        for index in range(match.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                break
        if depth != 0:
            raise ValueError("unbalanced braces")
        blocks.append(text[match.start():index + 1])
        position = index + 1
    return blocks


def _block_name(block: str) -> str | None:
    match = re.search(r'\bname\s*:\s*"([^"]*)"', block)
    return match.group(1) if match else None


def update_models_config(text: str, name: str, base_path: str) -> str:
    """``text`` (a TF Serving model config file, or "") with the entry for ``name`` added
    or replaced; the other entries are kept as they were written.

    Raises:
        ValueError: ``text`` is not a ``model_config_list`` this function can edit.
    """
    blocks = []
    if text.strip():
        try:
            if not re.match(r"\s*model_config_list\s*\{", text):
                raise ValueError("no model_config_list")
            blocks = _config_blocks(text[text.index("{") + 1:])
        except ValueError as error:
            raise ValueError(
                f"the existing models.config is not a model_config_list this exporter can "
                f"update ({error}); fix or move it, then export again."
            ) from None
    entry = model_config_entry(name, base_path).strip()
    kept = [block for block in blocks if _block_name(block) != name]
    lines = ["model_config_list {"]
    lines += [f"  {block.strip()}" for block in kept] + [f"  {entry}"]
    return "\n".join(lines) + "\n}\n"


def write_models_config(base: Path, name: str, serving_base: str = "/models") -> Path:
    """Adds or updates ``name`` in ``base/models.config`` (atomically) and returns its path.

    Args:
        base: the export base directory (``saved_models``).
        serving_base: where the server sees ``base``: ``/models`` for the Docker image run
            with ``-v $PWD/saved_models:/models``; an absolute host path for a native
            ``tensorflow_model_server``.
    """
    path = base / MODELS_CONFIG
    text = path.read_text() if path.exists() else ""
    updated = update_models_config(text, name, f"{serving_base.rstrip('/')}/{name}")
    temporary = path.with_name(path.name + f".tmp-{os.getpid()}")
    temporary.write_text(updated)
    temporary.replace(path)
    return path


# --- Signatures -------------------------------------------------------------------------------


def is_vae(models) -> bool:
    return hasattr(models, "vae")


def latent_dim(models) -> int:
    return int(models.decoder.input_shape[-1])


def vae_posterior_model(models):
    """images -> [z_mean, z_log_var]: the encoder without its Sampling layer, whose random
    draw, ``add_loss`` and KL metric have no place in a serving graph."""
    import keras

    encoder = models.encoder
    return keras.Model(
        encoder.inputs,
        [encoder.get_layer("z_mean").output, encoder.get_layer("z_log_var").output],
        name="posterior",
    )


def _decoder_outputs_to_images(models):
    """Decoder outputs -> images: sigmoid of Bernoulli logits, Gaussian means as they are."""
    import tensorflow as tf

    if is_vae(models) and models.likelihood == "bernoulli":
        return tf.sigmoid
    return tf.identity


def checked_images(images):
    """``images`` after in-graph checks of their shape and range.

    TF Serving feeds a request to the signature without checking it against the signature's
    shape (a (batch, 784) request would reach a dense encoder's Flatten and "work"), and it
    converts JSON integers 0-255 to float without scaling. These checks make such requests
    fail with a message saying what is expected.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    padded = tf.concat([shape, tf.zeros([3], tf.int32)], axis=0)  # safe to slice any rank
    shape_ok = tf.logical_and(tf.equal(tf.size(shape), 3),
                              tf.reduce_all(tf.equal(padded[1:3], IMAGE_SHAPE)))
    checks = [tf.debugging.Assert(shape_ok, [
        "images must be float32 of shape (batch, 28, 28); got shape", shape])]
    with tf.control_dependencies(checks):  # the range check needs a valid shape first
        range_ok = tf.logical_and(tf.reduce_all(images >= 0.0), tf.reduce_all(images <= 1.0))
        checks.append(tf.debugging.Assert(range_ok, [
            "images must be pixel values in [0, 1] (divide 0-255 pixels by 255); got min",
            tf.reduce_min(images), "max", tf.reduce_max(images)]))
    with tf.control_dependencies(checks):
        return tf.identity(images)


def checked_codings(codings, latent: int):
    """``codings`` after an in-graph check that they are (batch, ``latent``)."""
    import tensorflow as tf

    shape = tf.shape(codings)
    padded = tf.concat([shape, tf.zeros([2], tf.int32)], axis=0)
    shape_ok = tf.logical_and(tf.equal(tf.size(shape), 2), tf.equal(padded[1], latent))
    check = tf.debugging.Assert(shape_ok, [
        f"latent codes must be float32 of shape (batch, {latent}); got shape", shape])
    with tf.control_dependencies([check]):
        return tf.identity(codings)


def signature_functions(models) -> dict[str, tuple[Callable, list]]:
    """Per signature name: the function (returning a dict of named outputs) and its input
    signature (named ``tf.TensorSpec``), for an :class:`AutoencoderModels` or
    :class:`VAEModels` bundle."""
    import tensorflow as tf

    images_spec = tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32, name="images")
    latent = latent_dim(models)
    to_images = _decoder_outputs_to_images(models)

    if not is_vae(models):
        codings_spec = tf.TensorSpec((None, latent), tf.float32, name="coding")

        def reconstruct(images):
            return {"reconstruction": models.autoencoder(checked_images(images),
                                                         training=False)}

        def encode(images):
            return {"coding": models.encoder(checked_images(images), training=False)}

        def decode(coding):
            return {"images": models.decoder(checked_codings(coding, latent), training=False)}

        return {
            "serving_default": (reconstruct, [images_spec]),
            "encode": (encode, [images_spec]),
            "decode": (decode, [codings_spec]),
        }

    posterior = vae_posterior_model(models)
    decoder = models.decoder

    def vae_reconstruct(images):
        z_mean, _ = posterior(checked_images(images), training=False)
        return {"reconstruction": to_images(decoder(z_mean, training=False))}

    def vae_encode(images):
        z_mean, z_log_var = posterior(checked_images(images), training=False)
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    def vae_decode(z):
        return {"images": to_images(decoder(checked_codings(z, latent), training=False))}

    def generate(count, seed):
        checks = [
            tf.debugging.assert_positive(count, message="generate: count must be >= 1"),
            tf.debugging.assert_less_equal(
                count, MAX_GENERATE_COUNT,
                message=f"generate: count must be <= {MAX_GENERATE_COUNT}"),
        ]
        with tf.control_dependencies(checks):
            # Stateless: the same (count, seed) gives the same images on every call/server.
            z = tf.random.stateless_normal(
                tf.stack([count, latent]), seed=tf.stack([seed, tf.zeros_like(seed)]))
        return {"images": to_images(decoder(z, training=False)), "z": z}

    return {
        "serving_default": (vae_reconstruct, [images_spec]),
        "encode": (vae_encode, [images_spec]),
        "decode": (vae_decode, [tf.TensorSpec((None, latent), tf.float32, name="z")]),
        "generate": (generate, [tf.TensorSpec((), tf.int32, name="count"),
                                tf.TensorSpec((), tf.int64, name="seed")]),
    }


def build_archive(models):
    """A ``keras.export.ExportArchive`` holding the bundle's signatures (one endpoint each;
    ``serving_default`` is registered first, so it is also TF Serving's default)."""
    import keras

    archive = keras.export.ExportArchive()
    for model in (models.encoder, models.decoder, models.whole):
        archive.track(model)
    for name, (function, input_signature) in signature_functions(models).items():
        archive.add_endpoint(name=name, fn=function, input_signature=input_signature)
    return archive


def export_metadata(run, version: int) -> dict:
    """What the SavedModel was made from; kept in ``assets.extra`` (TF Serving ignores it)."""
    from hml_vae import __version__

    return {
        "run_dir": str(Path(run.directory).resolve()),
        "model": run.config.model,
        "latent_dim": run.config.latent_dim,
        "likelihood": run.config.likelihood if run.config.model in ("vae", "conv_vae")
        else None,
        "version": version,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "hml_vae_version": __version__,
    }


def read_metadata(savedmodel_dir: str | Path) -> dict | None:
    """The export metadata of a SavedModel written by :func:`export_run`, or None."""
    path = Path(savedmodel_dir) / METADATA_FILE
    return json.loads(path.read_text()) if path.exists() else None


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where an export went: the version directory, the version and the config file."""

    path: Path
    version: int
    models_config: Path | None


def export_run(run_dir: str | Path, name: str, base: str | Path = "saved_models",
               version: int | None = None, overwrite: bool = False,
               models_config: bool = False, serving_base: str = "/models") -> ExportResult:
    """Exports a finished run as ``base/name/version`` for TF Serving.

    Args:
        run_dir: a finished run directory (``scripts/train.py --output``).
        name: the served model's name (``/v1/models/NAME``); no separators or spaces.
        base: the directory holding one directory per served model.
        version: the integer version; default the next free one.
        overwrite: replace an existing ``version``.
        models_config: also add or update ``name`` in ``base/models.config``.
        serving_base: where the server sees ``base`` (see :func:`write_models_config`).

    Returns:
        An :class:`ExportResult`.

    Raises:
        RunError: ``run_dir`` is missing or not a finished run.
        ValueError: a bad name, an existing version, a base that cannot be written.
    """
    check_name(name)
    run = load_run(run_dir)  # RunError before anything is created
    base = Path(base)
    created = not (base / name).exists()
    model_dir = prepare_model_dir(base, name)
    try:
        remove_stale_temporaries(model_dir)
        version = check_version(next_version(model_dir) if version is None else version,
                                model_dir, overwrite)
        archive = build_archive(run.load_models())
        metadata = export_metadata(run, version)

        def write(directory: Path) -> None:
            archive.write_out(str(directory), verbose=False)
            (directory / METADATA_FILE).parent.mkdir(exist_ok=True)
            (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")

        path = write_atomically(model_dir, version, write, overwrite)
    except BaseException:
        if created and not any(model_dir.iterdir()):
            model_dir.rmdir()  # leave saved_models as it was: no empty model directory
        raise
    config_path = write_models_config(base, name, serving_base) if models_config else None
    return ExportResult(path, version, config_path)


# --- Checking exported models -----------------------------------------------------------------


def check_request_images(images) -> np.ndarray:
    """Images as the signatures take them, or ValueError saying what was expected.

    Accepts float arrays of shape (batch, 28, 28) with values in [0, 1] (and a single
    (28, 28) image, made a batch of one). uint8 pixels, (batch, 784) rows and
    (batch, 28, 28, 1) are rejected with the conversion to apply, rather than guessed at.
    """
    array = np.asarray(images)
    if array.dtype == np.uint8:
        raise ValueError(f"expected float32 pixels in [0, 1] of shape (batch, 28, 28), got "
                         f"uint8 of shape {array.shape}; send images.astype('float32') / 255.")
    if array.ndim == 2 and array.shape == IMAGE_SHAPE:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape (batch, 28, 28), got shape {array.shape}; "
                         f"reshape them with images.reshape(-1, 28, 28).")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected float32 pixels in [0, 1], got dtype {array.dtype}.")
    array = array.astype(np.float32)
    if array.size and (not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1):
        raise ValueError(f"expected pixel values in [0, 1], got values in "
                         f"[{np.nanmin(array):g}, {np.nanmax(array):g}]; divide 0-255 "
                         f"pixels by 255.")
    return array


def signature_inputs(models, signature_name: str, images: np.ndarray, codings: np.ndarray,
                     count: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Sample keyword inputs for one signature: images, latent codes or (count, seed)."""
    if signature_name in ("serving_default", "encode"):
        return {"images": images}
    if signature_name == "decode":
        return {decode_input_name(models): codings}
    if signature_name == "generate":
        return {"count": np.int32(count), "seed": np.int64(seed)}
    raise ValueError(f"no sample inputs for signature {signature_name!r}.")


def keras_reference(models, signature_name: str, images: np.ndarray, codings: np.ndarray,
                    exported: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the run's Keras models give for what a signature was given.

    VAEs go through the bundle's deterministic API (posterior mean; decoder outputs made
    probabilities). Autoencoders' models are called directly, as ``predict`` would but
    without tracing a function per call. For ``generate`` the reference decodes the prior
    draws ``z`` the signature returned (they come from TensorFlow's stateless generator,
    not NumPy's).
    """
    if not is_vae(models):
        model, argument, key = {
            "serving_default": (models.autoencoder, images, "reconstruction"),
            "encode": (models.encoder, images, "coding"),
            "decode": (models.decoder, codings, "images"),
        }[signature_name]
        return {key: np.asarray(model(argument, training=False))}
    if signature_name == "serving_default":
        return {"reconstruction": models.reconstruct(images)}
    if signature_name == "encode":
        z_mean, z_log_var = models.encode(images)
        return {"z_mean": z_mean, "z_log_var": z_log_var}
    if signature_name == "decode":
        return {"images": models.decode(codings)}
    if signature_name == "generate":
        return {"images": models.decode(exported["z"]), "z": exported["z"]}
    raise ValueError(f"no Keras reference for signature {signature_name!r}.")


def decode_input_name(models) -> str:
    return "z" if is_vae(models) else "coding"


def compare_outputs(exported: dict, reference: dict, atol: float = ATOL,
                    rtol: float = RTOL) -> dict[str, float]:
    """Max absolute difference per output; ValueError naming the outputs that differ by
    more than ``atol + rtol * |reference|`` or have other keys/shapes."""
    if set(exported) != set(reference):
        raise ValueError(f"exported outputs {sorted(exported)} differ from the Keras "
                         f"outputs {sorted(reference)}.")
    differences, failures = {}, []
    for key in sorted(reference):
        got, want = np.asarray(exported[key]), np.asarray(reference[key])
        if got.shape != want.shape:
            failures.append(f"{key}: shape {got.shape} != {want.shape}")
            continue
        differences[key] = float(np.max(np.abs(got - want))) if got.size else 0.0
        if not np.allclose(got, want, atol=atol, rtol=rtol):
            failures.append(f"{key}: max |difference| {differences[key]:.3g}")
    if failures:
        raise ValueError(f"exported and Keras outputs differ (atol {atol:g}, rtol {rtol:g}): "
                         + "; ".join(failures))
    return differences


def run_signature(loaded, signature_name: str, inputs: dict) -> dict[str, np.ndarray]:
    """Calls a signature of a ``tf.saved_model.load``-ed model with keyword inputs."""
    outputs = loaded.signatures[signature_name](**inputs)
    return {key: np.asarray(value) for key, value in outputs.items()}


def verify_savedmodel(loaded, models, images: np.ndarray) -> dict[str, dict[str, float]]:
    """Runs every signature of ``loaded`` and compares it with the Keras ``models``.

    Returns:
        Per signature, the max absolute difference per output.

    Raises:
        ValueError: a signature is missing or an output differs beyond the tolerance.
    """
    expected = {"serving_default", "encode", "decode"} | ({"generate"} if is_vae(models)
                                                          else set())
    missing = expected - set(loaded.signatures)
    if missing:
        raise ValueError(f"the SavedModel lacks the signatures {sorted(missing)}; it has "
                         f"{sorted(loaded.signatures)}.")
    codings = sample_codings(models, images)
    results = {}
    for signature_name in sorted(expected):
        inputs = signature_inputs(models, signature_name, images, codings)
        exported = run_signature(loaded, signature_name, inputs)
        reference = keras_reference(models, signature_name, images, codings, exported)
        results[signature_name] = compare_outputs(exported, reference)
    return results


def sample_codings(models, images: np.ndarray) -> np.ndarray:
    """Latent codes to test ``decode`` with: the codes of ``images`` (posterior means)."""
    if is_vae(models):
        return np.asarray(models.encode(images)[0], np.float32)
    return np.asarray(models.encoder(images, training=False), np.float32)


def format_shape(tensor_shape) -> str:
    """A ``TensorShapeProto`` as saved_model_cli prints it: ``(-1, 28, 28)``, ``()``."""
    if tensor_shape.unknown_rank:
        return "unknown_rank"
    dims = [str(dim.size) for dim in tensor_shape.dim]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def describe_signatures(savedmodel_dir: str | Path) -> str:
    """The signatures as ``saved_model_cli show --dir DIR --all`` lists them (read from
    ``saved_model.pb``, without loading the model)."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(savedmodel_dir) / "saved_model.pb").read_bytes())
    lines = []
    for meta_graph in saved_model.meta_graphs:
        tags = ", ".join(sorted(meta_graph.meta_info_def.tags))
        lines.append(f"MetaGraphDef with tag-set: '{tags}' contains the following "
                     f"SignatureDefs:")
        for key in sorted(meta_graph.signature_def):
            signature = meta_graph.signature_def[key]
            lines += ["", f"signature_def['{key}']:"]
            for title, tensors in (("input", signature.inputs), ("output", signature.outputs)):
                lines.append(f"  The given SavedModel SignatureDef contains the following "
                             f"{title}(s):")
                for alias in sorted(tensors):
                    info = tensors[alias]
                    shape = format_shape(info.tensor_shape)
                    lines += [f"    {title}s['{alias}'] tensor_info:",
                              f"        dtype: {types_pb2.DataType.Name(info.dtype)}",
                              f"        shape: {shape}",
                              f"        name: {info.name}"]
            lines.append(f"  Method name is: {signature.method_name}")
    return "\n".join(lines)
