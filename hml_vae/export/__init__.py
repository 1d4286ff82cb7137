"""SavedModels for TensorFlow Serving: versioned, published atomically, with named signatures.

:func:`export_run` turns a finished run directory into ``<base>/<name>/<version>/``, the
layout TensorFlow Serving watches, and optionally updates ``<base>/models.config``.

Signatures, for a run of images of shape (H, W, C) (float32 unless said otherwise):

======================= ============================== =====================================
name                    inputs                         outputs
======================= ============================== =====================================
serving_default         ``images`` (batch, H, W, C)    ``reconstruction`` (batch, H, W, C)
encode                  ``images`` (batch, H, W, C)    VAEs: ``z_mean``, ``z_log_var``
                                                       (batch, latent_dim); autoencoders:
                                                       ``coding`` (batch, latent_dim)
decode                  VAEs: ``z``; autoencoders:     ``images`` (batch, H, W, C)
                        ``coding`` (batch, latent_dim)
generate (VAEs)         ``count`` int32 (), ``seed``   ``images`` (count, H, W, C) and the
                        int64 ()                       prior draws ``z`` (count, latent_dim)
reconstruct_image_bytes ``image_bytes`` string (batch) as serving_default
encode_image_bytes      PNG/JPEG files, any size       as encode
reconstruct_uint8       ``pixels`` uint8               as serving_default
encode_uint8            (batch, H, W, C), 0-255        as encode
======================= ============================== =====================================

Modules: :mod:`~hml_vae.export.versions` (names, versions, atomic publishing),
:mod:`~hml_vae.export.serving_config` (models.config),
:mod:`~hml_vae.export.checks` (in-graph request checks, image decoding),
:mod:`~hml_vae.export.signatures`, :mod:`~hml_vae.export.exporter` (``export_run``),
:mod:`~hml_vae.export.requests` (client-side checks),
:mod:`~hml_vae.export.verification` (comparing with the Keras models),
:mod:`~hml_vae.export.session` (requests fed as TF Serving feeds them),
:mod:`~hml_vae.export.local_server` (a stand-in for TF Serving's REST and gRPC APIs).

Everything is deterministic: a VAE reconstructs from the posterior mean, and its decoder
outputs are pixel probabilities (Bernoulli decoders: the sigmoid of the logits the Keras
decoder returns) or means (Gaussian decoders). Autoencoder outputs are the models' linear
outputs, not clipped to [0, 1].

Example:
    >>> result = export_run("runs/vae", name="vae", base="saved_models", label="canary")
    >>> result.path
    PosixPath('saved_models/vae/1')
"""

import importlib

# The public API, by module; loaded on first use, so that the scripts' checks before any
# TensorFlow import (names, versions) stay fast.
_EXPORTS = {
    "checks": (
        "MAX_CODING_MAGNITUDE", "MAX_GENERATE_COUNT", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS",
        "checked_codings", "checked_images", "checked_scalar", "format_batch_shape",
        "images_from_bytes", "images_from_pixels",
    ),
    "exporter": (
        "ExportResult", "METADATA_FILE", "export_metadata", "export_run", "read_metadata",
    ),
    "local_server": (
        "LocalServer",
    ),
    "requests": (
        "check_request_images", "read_image_file", "to_pixels",
    ),
    "serving_config": (
        "MODELS_CONFIG", "ModelsConfigError", "format_models_config", "parse_models_config",
        "read_models_config", "updated_models_config", "write_models_config",
    ),
    "session": (
        "BadRequest", "ServingSession", "bad_requests", "check_rejections",
    ),
    "signatures": (
        "IMAGE_SIGNATURES", "build_archive", "decode_input_name", "expected_signatures",
        "signature_functions",
    ),
    "verification": (
        "ATOL", "RTOL", "SavedModelError", "compare_outputs", "describe_signatures", "encode_png",
        "keras_reference", "random_images", "read_saved_model_proto", "run_signature",
        "run_test_images", "sample_codings", "signature_image_shape", "signature_inputs",
        "verify_savedmodel",
    ),
    "versions": (
        "ExportError", "StagedVersion", "TEMPORARY_PREFIX", "check_name", "existing_versions",
        "next_version", "prepare_model_dir", "remove_stale_temporaries", "write_atomically",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'hml_vae.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hml_vae.export.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
