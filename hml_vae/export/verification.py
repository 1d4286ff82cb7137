"""Checking an exported SavedModel against the Keras models of its run.

:func:`verify_savedmodel` runs every signature of a ``tf.saved_model.load``-ed export (the
image signatures on the same pictures as PNG files and uint8 pixels) and compares the
outputs with the run's Keras models; :func:`describe_signatures` lists the signatures as
``saved_model_cli show --all`` does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hml_vae.export.requests import to_pixels
from hml_vae.export.signatures import IMAGE_SIGNATURES, decode_input_name, expected_signatures
from hml_vae.families.bundle import prior_codings

# Exported and Keras outputs agree to this (float32; graph vs eager kernels differ in the
# order of summation only).
ATOL = 1e-5
RTOL = 1e-4
# The seed generate is compared on.
GENERATE_SEED = 12345


class SavedModelError(ValueError):
    """A file that should be a SavedModel is not one (truncated, corrupt, another file)."""


def read_saved_model_proto(savedmodel_dir: str | Path):
    """The ``SavedModel`` protobuf of ``savedmodel_dir/saved_model.pb``.

    Raises:
        SavedModelError: the file is missing, unreadable, truncated or not a SavedModel.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(savedmodel_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(path.read_bytes())
    except OSError as error:
        raise SavedModelError(f"cannot read {path}: {error.strerror}.") from None
    except DecodeError:
        raise SavedModelError(f"{path} is not a SavedModel (truncated or corrupt); export "
                              f"the run again.") from None
    if not saved_model.meta_graphs:
        raise SavedModelError(f"{path} holds no MetaGraph (truncated or not a SavedModel); "
                              f"export the run again.")
    return saved_model


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


def encode_png(pixels: np.ndarray) -> list[bytes]:
    """uint8 pixels (N, H, W, C) as N PNG files (lossless: they decode to the same pixels)."""
    import tensorflow as tf

    return [tf.io.encode_png(image).numpy() for image in pixels]


def signature_inputs(models, signature_name: str, images: np.ndarray, codings: np.ndarray,
                     count: int = 4) -> dict[str, np.ndarray]:
    """Sample keyword inputs for one signature: images (as floats, uint8 pixels or PNG
    files), latent codes or (count, seed)."""
    if signature_name in ("serving_default", "encode"):
        return {"images": images}
    if signature_name in IMAGE_SIGNATURES:
        pixels = to_pixels(images)
        if IMAGE_SIGNATURES[signature_name][1] == "pixels":
            return {"pixels": pixels}
        return {"image_bytes": np.asarray(encode_png(pixels), dtype=object)}
    if signature_name == "decode":
        return {decode_input_name(models): codings}
    if signature_name == "generate":
        return {"count": np.int32(count), "seed": np.int64(GENERATE_SEED)}
    raise ValueError(f"no sample inputs for signature {signature_name!r}.")


def keras_reference(models, signature_name: str, images: np.ndarray, codings: np.ndarray,
                    exported: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the run's Keras models give for what a signature was given, through the
    bundle's deterministic API (a VAE's posterior mean; decoder outputs made images).

    An image signature's reference is its float signature's on the pixels it was sent
    (``images`` rounded to 0-255, divided by 255); ``generate``'s is the bundle's
    ``generate`` for the same (count, seed), with the draws ``z`` of
    :func:`hml_vae.families.bundle.prior_codings`.
    """
    if signature_name in IMAGE_SIGNATURES:
        float_signature = IMAGE_SIGNATURES[signature_name][0]
        return keras_reference(models, float_signature, to_pixels(images) / np.float32(255),
                               codings, exported)
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
        count = len(exported["z"])
        return {"images": models.generate(count, GENERATE_SEED),
                "z": prior_codings(count, models.latent_dim, GENERATE_SEED)}
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
    expected = expected_signatures(models, bool(set(IMAGE_SIGNATURES) & set(loaded.signatures)))
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



def format_shape(tensor_shape) -> str:
    """A ``TensorShapeProto`` as saved_model_cli prints it: ``(-1, 28, 28, 1)``, ``(-1)``,
    ``()``."""
    if tensor_shape.unknown_rank:
        return "unknown_rank"
    return "(" + ", ".join(str(dim.size) for dim in tensor_shape.dim) + ")"


def describe_signatures(savedmodel_dir: str | Path) -> str:
    """The signatures as ``saved_model_cli show --dir DIR --all`` lists them (read from
    ``saved_model.pb``, without loading the model)."""
    from tensorflow.core.framework import types_pb2

    saved_model = read_saved_model_proto(savedmodel_dir)
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
