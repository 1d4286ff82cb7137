"""SavedModels for TensorFlow Serving: versioned, written atomically, with named signatures.

:func:`export_run` turns a finished run directory into ``<base>/<name>/<version>/``, the
layout TensorFlow Serving watches (it serves the highest integer version and loads new
ones while running). The version is written in a hidden temporary directory beside it and
renamed into place only when complete, so a server never sees half a model.

Signatures, for a run of images of shape (H, W, C) (float32 unless said otherwise):

=============== ================================= =========================================
name            inputs                            outputs
=============== ================================= =========================================
serving_default ``images`` (batch, H, W, C)       ``reconstruction`` (batch, H, W, C)
encode          ``images`` (batch, H, W, C)       VAEs: ``z_mean``, ``z_log_var``
                                                  (batch, latent_dim); autoencoders:
                                                  ``coding`` (batch, latent_dim)
decode          VAEs: ``z``; autoencoders:        ``images`` (batch, H, W, C)
                ``coding`` (batch, latent_dim)
generate (VAEs) ``count`` int32 (), ``seed``      ``images`` (count, H, W, C) and the prior
                int64 ()                          draws ``z`` (count, latent_dim)
=============== ================================= =========================================

(H, W, C) is the run's (``models.image_shape``): (28, 28, 1) for Fashion-MNIST, whose
images must be sent with their channel axis. Images are float32 pixels in [0, 1]. TF
Serving feeds a request to the graph without checking it against the signature, so every
signature checks its inputs in the graph (rank, each dimension, finiteness, the pixel
range, ``count``'s bounds) and fails with a message naming the input and what it must
be; a request of another dtype is refused by TensorFlow before the graph runs.
:func:`check_request_images` makes the same checks client-side, and
:func:`check_rejections` runs requests that break each rule through a C++ session, the way
TF Serving would.

Everything is deterministic: a VAE reconstructs from the posterior mean, and its decoder
outputs are pixel probabilities (Bernoulli decoders: the sigmoid of the logits the Keras
decoder returns) or means (Gaussian decoders). Autoencoder outputs are the models' linear
outputs, not clipped to [0, 1].

Example:
    >>> result = export_run("runs/vae", name="vae", base="saved_models")
    >>> result.path
    PosixPath('saved_models/vae/1')
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hml_vae.runs import load_run

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


# --- In-graph checks of requests ------------------------------------------------------------


def format_batch_shape(shape) -> str:
    """``(batch, 28, 28, 1)``: a batch of items of ``shape``, as the messages print it."""
    return "(" + ", ".join(["batch", *(str(int(size)) for size in shape)]) + ")"


def _runtime_shape(tensor):
    """(shape, rank) of ``tensor`` as fed when the graph runs.

    ``tf.rank`` and ``tf.size(tf.shape(...))`` become constants when the traced TensorSpec
    fixes the rank, so a request of another rank would pass them; TF Serving feeds requests
    of any rank, so the raw ops, which are always evaluated, are used instead.
    """
    import tensorflow as tf

    shape = tf.raw_ops.Shape(input=tensor, out_type=tf.int32)
    return shape, tf.raw_ops.Size(input=shape, out_type=tf.int32)


def _has_shape(shape, rank, expected):
    """Whether a runtime ``shape`` of length ``rank`` is ``expected`` (None: any size)."""
    import tensorflow as tf

    # Padded with zeros so that indexing is safe whatever the rank of the request.
    padded = tf.concat([shape, tf.zeros([len(expected)], tf.int32)], axis=0)
    conditions = [tf.equal(rank, len(expected))]
    conditions += [tf.equal(padded[axis], size) for axis, size in enumerate(expected)
                   if size is not None]
    return tf.reduce_all(tf.stack(conditions))


def _assert(condition, template: str, *values):
    """An Assert failing with ``template`` formatted (``{}``) with the runtime ``values``."""
    import tensorflow as tf

    message = tf.strings.format(template, values, summarize=-1) if values else template
    return tf.debugging.Assert(condition, [message])


def _shape_check(tensor, name: str, shape, what: str = ""):
    """Assert that ``tensor`` is a batch of items of ``shape``."""
    runtime_shape, rank = _runtime_shape(tensor)
    return _assert(_has_shape(runtime_shape, rank, (None, *shape)),
                   f"{name} must be float32 of shape {format_batch_shape(shape)}{what}; "
                   f"got shape {{}}", runtime_shape)


def _finite_check(tensor, name: str):
    import tensorflow as tf

    bad = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(tensor)), tf.int32))
    return _assert(tf.equal(bad, 0), f"{name} must be finite; got {{}} NaN or infinite "
                   f"values", bad)


def _after(tensor, checks, shape):
    """``tensor`` reshaped to ``shape``, computed only once every check (a function
    returning an Assert) passed.

    Each check waits for the one before, so a request breaking several rules is told
    about the first (its shape before its values). The reshape (free for a valid request)
    is what keeps the checks: Grappler unifies the shapes that the shape functions of later
    ops merge (``tf.stack``'s inputs, ...) with the shape of their input, through any
    ``Identity``, and would then fold the shape check of the request into "passed". The
    reshaped tensor has a shape of its own.
    """
    import tensorflow as tf

    done = []
    for check in checks:
        with tf.control_dependencies(done):
            done.append(check())
    with tf.control_dependencies(done):
        return tf.reshape(tensor, shape)


def checked_images(images, image_shape):
    """``images`` after in-graph checks that they are (batch, H, W, C) of ``image_shape``,
    finite and in [0, 1].

    TF Serving feeds a request to the signature without checking it against the signature's
    shape (a (batch, H·W·C) request would reach a dense encoder's Flatten and "work"), and
    it converts JSON integers 0-255 to float without scaling. These checks make such
    requests fail with a message naming ``images`` and saying what is expected, e.g.
    ``images must be float32 of shape (batch, 32, 32, 3) in [0, 1]; got shape [1 28 28 1]``.
    """
    import tensorflow as tf

    image_shape = tuple(int(size) for size in image_shape)

    def in_range():
        within = tf.logical_and(tf.reduce_all(images >= 0.0), tf.reduce_all(images <= 1.0))
        return _assert(within, "images must be pixel values in [0, 1] (divide 0-255 "
                       "pixels by 255); got values in [{}, {}]",
                       tf.reduce_min(images), tf.reduce_max(images))

    return _after(images, [lambda: _shape_check(images, "images", image_shape, " in [0, 1]"),
                           lambda: _finite_check(images, "images"),
                           in_range], (-1, *image_shape))


def checked_codings(codings, latent_dim: int, name: str = "z"):
    """``codings`` after in-graph checks that they are finite and (batch, ``latent_dim``)."""
    return _after(codings, [lambda: _shape_check(codings, name, (int(latent_dim),)),
                            lambda: _finite_check(codings, name)], (-1, int(latent_dim)))


def checked_scalar(value, name: str, dtype_name: str, checks=()):
    """``value`` after an in-graph check that it is a scalar, then ``checks``
    (functions of ``value`` returning an Assert)."""
    shape, rank = _runtime_shape(value)
    scalar = [lambda: _assert(_has_shape(shape, rank, ()),
                              f"{name} must be an {dtype_name} scalar; got shape {{}}", shape)]
    return _after(value, scalar + [lambda check=check: check(value) for check in checks], ())


# generate's bounds on ``count``, checked once it is known to be a scalar.
COUNT_CHECKS = (
    lambda count: _assert(count >= 1, "count must be >= 1; got {}", count),
    lambda count: _assert(count <= MAX_GENERATE_COUNT,
                          f"count must be <= {MAX_GENERATE_COUNT}; got {{}}", count),
)


# --- Signatures -------------------------------------------------------------------------------


def decode_input_name(models) -> str:
    """The input of ``decode``: ``z`` for VAEs, ``coding`` for autoencoders."""
    return "z" if models.variational else "coding"


def expected_signatures(models) -> set[str]:
    """The signatures an export of ``models`` has."""
    return {"serving_default", "encode", "decode"} | ({"generate"} if models.variational
                                                      else set())


def _decoder_outputs_to_images(models):
    """Decoder outputs -> images: sigmoid of Bernoulli logits, Gaussian means as they are."""
    import tensorflow as tf

    if models.variational and models.likelihood == "bernoulli":
        return tf.sigmoid
    return tf.identity


def signature_functions(models) -> dict[str, tuple[Callable, list]]:
    """Per signature name: the function (returning a dict of named outputs) and its input
    signature (named ``tf.TensorSpec``), for a bundle of any family and image shape."""
    import tensorflow as tf

    image_shape = tuple(models.image_shape)
    latent = models.latent_dim
    images_spec = tf.TensorSpec((None, *image_shape), tf.float32, name="images")
    codings_name = decode_input_name(models)
    codings_spec = tf.TensorSpec((None, latent), tf.float32, name=codings_name)

    def images_in(images):
        return checked_images(images, image_shape)

    def codings_in(codings):
        return checked_codings(codings, latent, codings_name)

    if not models.variational:

        def reconstruct(images):
            return {"reconstruction": models.whole(images_in(images), training=False)}

        def encode(images):
            return {"coding": models.encoder(images_in(images), training=False)}

        def decode(coding):
            return {"images": models.decoder(codings_in(coding), training=False)}

        return {
            "serving_default": (reconstruct, [images_spec]),
            "encode": (encode, [images_spec]),
            "decode": (decode, [codings_spec]),
        }

    # The encoder without its Sampling layer, whose random draw, add_loss and KL metric
    # have no place in a serving graph.
    posterior = models.posterior_model()
    decoder = models.decoder
    to_images = _decoder_outputs_to_images(models)

    def vae_reconstruct(images):
        z_mean, _ = posterior(images_in(images), training=False)
        return {"reconstruction": to_images(decoder(z_mean, training=False))}

    def vae_encode(images):
        z_mean, z_log_var = posterior(images_in(images), training=False)
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    def vae_decode(z):
        return {"images": to_images(decoder(codings_in(z), training=False))}

    def generate(count, seed):
        count = checked_scalar(count, "count", "int32", COUNT_CHECKS)
        seed = checked_scalar(seed, "seed", "int64")
        # Stateless: the same (count, seed) gives the same images on every call/server.
        z = tf.random.stateless_normal(
            tf.stack([count, latent]), seed=tf.stack([seed, tf.zeros_like(seed)]))
        return {"images": to_images(decoder(z, training=False)), "z": z}

    return {
        "serving_default": (vae_reconstruct, [images_spec]),
        "encode": (vae_encode, [images_spec]),
        "decode": (vae_decode, [codings_spec]),
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


def export_metadata(run, models, version: int) -> dict:
    """What the SavedModel was made from; kept in ``assets.extra`` (TF Serving ignores it)."""
    from hml_vae import __version__

    return {
        "run_dir": str(Path(run.directory).resolve()),
        "family": run.config.model,
        "variational": models.variational,
        "image_shape": list(models.image_shape),
        "latent_dim": models.latent_dim,
        "likelihood": models.likelihood if models.variational else None,
        "signatures": sorted(expected_signatures(models)),
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
        models = run.load_models()
        archive = build_archive(models)
        metadata = export_metadata(run, models, version)

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


# --- Requests, client-side -------------------------------------------------------------------


def _shape_hint(shape: tuple, image_shape: tuple) -> str:
    """What probably went wrong with images of ``shape``, as an instruction."""
    height, width, channels = image_shape
    if shape[1:] == (height, width) and channels == 1:
        return "add the channel axis: images[..., None]."
    if shape[1:] == (channels, height, width):
        return "put the channels last: images.transpose(0, 2, 3, 1)."
    if len(shape) == 2 and shape[1] == math.prod(image_shape):
        return f"if they are flattened rows, images.reshape(-1, {height}, {width}, {channels})."
    return (f"the served model takes {height}x{width} images with {channels} channel"
            f"{'s' if channels != 1 else ''}; convert or resize them.")


def check_request_images(images, image_shape) -> np.ndarray:
    """Images as the signatures of a model of ``image_shape`` take them, or ValueError
    saying what was expected and which conversion is missing.

    Args:
        images: float pixels in [0, 1] of shape (batch, H, W, C), or one image (H, W, C).
        image_shape: the served model's (H, W, C) (``models.image_shape``; the export
            metadata's ``image_shape``).

    Returns:
        float32 (batch, H, W, C).

    Example:
        >>> check_request_images(np.zeros((2, 28, 28)), (28, 28, 1))
        ValueError: expected images of shape (batch, 28, 28, 1), got shape (2, 28, 28); add
        the channel axis: images[..., None].
    """
    image_shape = tuple(int(size) for size in image_shape)
    expected = format_batch_shape(image_shape)
    array = np.asarray(images)
    if array.dtype == np.uint8:
        raise ValueError(f"expected float32 pixels in [0, 1] of shape {expected}, got uint8 "
                         f"of shape {array.shape}; send images.astype('float32') / 255.")
    if array.shape == image_shape:
        array = array[None]  # one image
    if array.shape[1:] != image_shape:
        raise ValueError(f"expected images of shape {expected}, got shape {array.shape}; "
                         f"{_shape_hint(array.shape, image_shape)}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected float32 pixels in [0, 1], got dtype {array.dtype}.")
    array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"expected finite pixel values in [0, 1], got "
                         f"{array.size - np.count_nonzero(finite)} NaN or infinite values.")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"expected pixel values in [0, 1], got values in "
                         f"[{array.min():g}, {array.max():g}]; divide 0-255 pixels by 255.")
    return array


# --- Checking exported models -----------------------------------------------------------------


def run_test_images(config, count: int, data_dir: str | None = None) -> np.ndarray:
    """The first ``count`` test images of a run's data set, as the run saw them (binarized
    when it was), from ``hml_vae.data.load_for_config``.

    Args:
        config: the run's config (its data source and image shape).
        count: how many images; fewer when the test split is smaller.
        data_dir: where the data set is, when not where the run found it.

    Raises:
        DataError: the data set cannot be loaded here.
        ValueError: its images are not of the run's image shape.
    """
    from hml_vae import data as data_lib

    # A limit whose test split still holds ``count`` images (HOML's split has 10,000 test
    # per 55,000 training images): only the first ``count`` are used, and loading (and
    # binarizing) the whole data set would cost more than the check.
    limit = count * 6 if config.limit is None else min(config.limit, count * 6)
    changes = {"limit": limit} | ({"data_dir": data_dir} if data_dir else {})
    dataset = data_lib.load_for_config(dataclasses.replace(config, **changes))
    if config.image_shape is not None and tuple(dataset.image_shape) != tuple(
            config.image_shape):
        raise ValueError(
            f"the run's data set has images of shape {tuple(dataset.image_shape)}, but the "
            f"run was trained on {tuple(config.image_shape)}; pass the data it was trained "
            f"on (--data-dir)."
        )
    images, _ = dataset.test.head(count)
    return np.asarray(images, np.float32)


def random_images(image_shape, count: int, seed: int = 0) -> np.ndarray:
    """``count`` uniform random images (count, H, W, C) in [0, 1]: inputs on which to compare
    a SavedModel with its Keras models when the run's data set is not at hand."""
    shape = (count, *(int(size) for size in image_shape))
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


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
    """What the run's Keras models give for what a signature was given, through the
    bundle's deterministic API (a VAE's posterior mean; decoder outputs made images).

    For ``generate`` the reference decodes the prior draws ``z`` the signature returned
    (they come from TensorFlow's stateless generator, not NumPy's).
    """
    if signature_name == "serving_default":
        return {"reconstruction": models.reconstruct(images)}
    if signature_name == "encode":
        if models.variational:
            z_mean, z_log_var = models.encode(images)
            return {"z_mean": z_mean, "z_log_var": z_log_var}
        return {"coding": models.coding(images)}
    if signature_name == "decode":
        return {"images": models.decode(codings)}
    if signature_name == "generate":
        return {"images": models.decode(exported["z"]), "z": exported["z"]}
    raise ValueError(f"no Keras reference for signature {signature_name!r}.")


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


def signature_image_shape(loaded) -> tuple[int, ...]:
    """(H, W, C) of the images a ``tf.saved_model.load``-ed export takes."""
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    return tuple(int(size) for size in spec.shape[1:])


def verify_savedmodel(loaded, models, images: np.ndarray) -> dict[str, dict[str, float]]:
    """Runs every signature of ``loaded`` and compares it with the Keras ``models``.

    Returns:
        Per signature, the max absolute difference per output.

    Raises:
        ValueError: a signature is missing, takes images of another shape than the models,
            or an output differs beyond the tolerance.
    """
    expected = expected_signatures(models)
    missing = expected - set(loaded.signatures)
    if missing:
        raise ValueError(f"the SavedModel lacks the signatures {sorted(missing)}; it has "
                         f"{sorted(loaded.signatures)}.")
    if signature_image_shape(loaded) != tuple(models.image_shape):
        raise ValueError(f"the SavedModel takes images of shape {signature_image_shape(loaded)}"
                         f" but the run's models {tuple(models.image_shape)}; is it an export "
                         f"of another run?")
    codings = sample_codings(models, images)
    results = {}
    for signature_name in sorted(expected):
        inputs = signature_inputs(models, signature_name, images, codings)
        exported = run_signature(loaded, signature_name, inputs)
        reference = keras_reference(models, signature_name, images, codings, exported)
        results[signature_name] = compare_outputs(exported, reference)
    return results


def sample_codings(models, images: np.ndarray) -> np.ndarray:
    """Latent codes to test ``decode`` with: the codes of ``images`` (a VAE's posterior
    means)."""
    return np.asarray(models.coding(images), np.float32)


# --- Requests as TF Serving runs them --------------------------------------------------------


class ServingSession:
    """A SavedModel loaded into TensorFlow's C++ session and fed as TF Serving feeds it.

    TF Serving runs a signature with ``Session::Run`` on a request's tensors as they are;
    unlike the functions of ``tf.saved_model.load``, nothing compares their shape with the
    signature's first. This shows what a server answers to a bad request.

    Example:
        >>> with ServingSession("saved_models/vae/1") as session:
        ...     session.run("serving_default", {"images": np.zeros((1, 28, 28))})
        InvalidArgumentError: assertion failed: [images must be float32 of shape (batch,
        28, 28, 1) in [0, 1]; got shape [1 28 28]] ...
    """

    def __init__(self, savedmodel_dir: str | Path):
        import tensorflow as tf

        self.path = Path(savedmodel_dir)
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # the TF1 loader's deprecation notice
        try:
            with self.graph.as_default():
                meta_graph = tf.compat.v1.saved_model.load(self.session, ["serve"],
                                                           str(self.path))
        finally:
            logger.setLevel(level)
        self.signatures = dict(meta_graph.signature_def)
        self._callables = {}

    def run(self, signature_name: str, inputs: dict) -> dict[str, np.ndarray]:
        """The outputs of a signature for ``inputs`` (arrays fed with their own shape and
        dtype); ``tf.errors.InvalidArgumentError`` when the graph rejects them."""
        from tensorflow.core.protobuf import config_pb2

        signature = self.signatures[signature_name]
        names, outputs = sorted(inputs), sorted(signature.outputs)
        key = (signature_name, tuple(names))
        if key not in self._callables:
            options = config_pb2.CallableOptions(
                feed=[signature.inputs[name].name for name in names],
                fetch=[signature.outputs[name].name for name in outputs])
            # Session::MakeCallable: unlike Session.run, whose Python feed handling converts
            # and checks each value against its placeholder, it feeds the arrays as given.
            self._callables[key] = self.session._make_callable_from_options(options)
        values = self._callables[key](*(np.asarray(inputs[name]) for name in names))
        return {name: np.asarray(value) for name, value in zip(outputs, values, strict=True)}

    def close(self) -> None:
        self._callables.clear()
        self.session.close()

    def __enter__(self) -> ServingSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class BadRequest:
    """A request breaking one rule of a signature, and the words its error must contain."""

    signature: str
    problem: str
    inputs: dict
    error_words: tuple[str, ...]


def _valid_input(key: str, dtype, dims: list[int]) -> np.ndarray:
    if not dims:
        return np.asarray(2 if key == "count" else 0, dtype)
    return np.full((2, *dims[1:]), 0.5, dtype)


def _bad_inputs(key: str, dtype, dims: list[int]):
    """(problem, value, words of the error) for each way to get input ``key`` wrong."""
    other_dtype = {np.float32: np.float64, np.int32: np.int64, np.int64: np.int32}[dtype]
    wrong_dtype = ("dtype " + np.dtype(other_dtype).name,
                   _valid_input(key, other_dtype, dims),
                   ({np.float64: "double"}.get(other_dtype, np.dtype(other_dtype).name), key))
    if not dims:  # generate's scalars
        scalar = f"{key} must be an {np.dtype(dtype).name} scalar"
        problems = [("shape (1,)", np.zeros(1, dtype), (scalar,)), wrong_dtype]
        if key == "count":
            problems += [("0", np.asarray(0, dtype), ("count must be >= 1",)),
                         (str(MAX_GENERATE_COUNT + 1), np.asarray(MAX_GENERATE_COUNT + 1, dtype),
                          (f"count must be <= {MAX_GENERATE_COUNT}",))]
        return problems
    item = dims[1:]
    wrong_shape = (f"{key} must be float32 of shape {format_batch_shape(item)}",)
    shapes = {f"shape {(2, *item[:-1])}": (2, *item[:-1]),  # an axis missing
              f"shape {(2, *item, 1)}": (2, *item, 1)}  # an axis too many
    if len(item) > 1:
        shapes[f"shape {(2, math.prod(item))}"] = (2, math.prod(item))  # flattened
    for axis, size in enumerate(item):  # each dimension wrong; images' channels 1 <-> 3
        changed = [*item]
        changed[axis] = 4 - size if key == "images" and axis == 2 else size + 1
        shapes[f"shape {(2, *changed)}"] = (2, *changed)
    problems = [(problem, np.zeros(shape, dtype), wrong_shape)
                for problem, shape in shapes.items()]
    valid = _valid_input(key, dtype, dims)
    for name, value in (("NaN", np.nan), ("infinity", np.inf)):
        broken = valid.copy()
        broken.flat[-1] = value
        problems.append((name, broken, (f"{key} must be finite",)))
    if key == "images":
        problems.append(("0-255 pixels", np.full_like(valid, 255.0),
                         ("images must be pixel values in [0, 1]",)))
    return [*problems, wrong_dtype]


def bad_requests(signatures) -> list[BadRequest]:
    """For each input of each signature (``{name: SignatureDef}``, as
    :attr:`ServingSession.signatures`), a request per way to get it wrong: wrong rank, each
    dimension wrong, NaN, infinity, pixels out of range, another dtype; the other inputs
    are valid."""
    import tensorflow as tf

    requests = []
    for signature_name in sorted(signatures):
        inputs = signatures[signature_name].inputs
        specs = {key: (tf.as_dtype(info.dtype).as_numpy_dtype,
                       [dim.size for dim in info.tensor_shape.dim])
                 for key, info in inputs.items()}
        valid = {key: _valid_input(key, *spec) for key, spec in specs.items()}
        for key, spec in sorted(specs.items()):
            for problem, value, words in _bad_inputs(key, *spec):
                requests.append(BadRequest(signature_name, f"{key} {problem}",
                                           {**valid, key: value}, words))
    return requests


def check_rejections(session: ServingSession) -> list[tuple[BadRequest, str]]:
    """Feeds every :func:`bad_requests` request to ``session`` as TF Serving would.

    Returns:
        (request, the first line of its error) for each.

    Raises:
        ValueError: a request was answered, or failed with an error that does not say
            what is wrong with which input.
    """
    import tensorflow as tf

    results, failures = [], []
    for request in bad_requests(session.signatures):
        try:
            session.run(request.signature, request.inputs)
        except tf.errors.InvalidArgumentError as error:
            # The first line is the message; TensorFlow's own (a dtype refused before the
            # graph runs) name the input in the node on the next.
            lines = error.message.strip().splitlines()
            message = lines[0] if all(word in lines[0] for word in request.error_words) \
                else " ".join(" ".join(lines).split())
            if all(word in message for word in request.error_words):
                results.append((request, message))
            else:
                failures.append(f"{request.signature} with {request.problem}: {message}")
        else:
            failures.append(f"{request.signature} answered a request with {request.problem}")
    if failures:
        raise ValueError("bad requests were not rejected with a message naming the input: "
                         + "; ".join(failures))
    return results


def format_shape(tensor_shape) -> str:
    """A ``TensorShapeProto`` as saved_model_cli prints it: ``(-1, 28, 28, 1)``, ``()``."""
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
