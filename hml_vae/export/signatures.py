"""The signatures of an exported model, for a bundle of any family and image shape.

Float signatures take images float32 (batch, H, W, C) in [0, 1] of the run's shape; the
image signatures take the same pictures as clients hold them and return the same outputs:
``*_image_bytes`` a string vector of PNG/JPEG files (any size, gray or colour: decoded,
converted and resized in the graph), ``*_uint8`` pixels uint8 (batch, H, W, C).
"""

from __future__ import annotations

from collections.abc import Callable

from hml_vae.export.checks import (
    COUNT_CHECKS,
    checked_codings,
    checked_images,
    checked_scalar,
    images_from_bytes,
    images_from_pixels,
)

# Per image signature: (the float signature whose outputs it returns, its input's name).
IMAGE_SIGNATURES = {
    "reconstruct_image_bytes": ("serving_default", "image_bytes"),
    "encode_image_bytes": ("encode", "image_bytes"),
    "reconstruct_uint8": ("serving_default", "pixels"),
    "encode_uint8": ("encode", "pixels"),
}


def decode_input_name(models) -> str:
    """The input of ``decode``: ``z`` for VAEs, ``coding`` for autoencoders."""
    return "z" if models.variational else "coding"


def expected_signatures(models, image_signatures: bool = True) -> set[str]:
    """The signatures an export of ``models`` has (with or without the image ones)."""
    return ({"serving_default", "encode", "decode"}
            | (set(IMAGE_SIGNATURES) if image_signatures else set())
            | ({"generate"} if models.variational else set()))


def _decoder_outputs_to_images(models):
    """Decoder outputs -> images: sigmoid of Bernoulli logits, Gaussian means as they are."""
    import tensorflow as tf

    if models.variational and models.likelihood == "bernoulli":
        return tf.sigmoid
    return tf.identity


def prior_draws(count, seed, latent_dim: int):
    """z ~ N(0, I) (count, latent_dim) for tensors ``count`` and ``seed``: what
    :func:`hml_vae.families.bundle.prior_codings` draws for the same numbers."""
    import tensorflow as tf

    from hml_vae.families.bundle import KERAS_SEED_MODULUS

    key = tf.cast(tf.math.floormod(seed, KERAS_SEED_MODULUS), tf.int32)
    return tf.random.stateless_normal(tf.stack([count, latent_dim]),
                                      seed=tf.stack([key, tf.zeros_like(key)]))


def float_functions(models) -> dict[str, Callable]:
    """Per float signature, a function of checked float inputs returning named outputs."""
    import tensorflow as tf

    latent = models.latent_dim
    if not models.variational:
        return {
            "serving_default": lambda images: {
                "reconstruction": models.whole(images, training=False)},
            "encode": lambda images: {"coding": models.encoder(images, training=False)},
            "decode": lambda coding: {"images": models.decoder(coding, training=False)},
        }
    # The encoder without its Sampling layer, whose random draw, add_loss and KL metric
    # have no place in a serving graph.
    posterior = models.posterior_model()
    decoder = models.decoder
    to_images = _decoder_outputs_to_images(models)

    def reconstruct(images):
        z_mean, _ = posterior(images, training=False)
        return {"reconstruction": to_images(decoder(z_mean, training=False))}

    def encode(images):
        z_mean, z_log_var = posterior(images, training=False)
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    def generate(count, seed):
        # Stateless: the same (count, seed) gives the same images on every call/server.
        z = prior_draws(count, seed, latent)
        return {"images": to_images(decoder(z, training=False)), "z": tf.identity(z)}

    return {"serving_default": reconstruct, "encode": encode,
            "decode": lambda z: {"images": to_images(decoder(z, training=False))},
            "generate": generate}


def signature_functions(models, image_signatures: bool = True
                        ) -> dict[str, tuple[Callable, list]]:
    """Per signature name: the function (returning a dict of named outputs; inputs checked
    in the graph) and its input signature (named ``tf.TensorSpec``); without the image
    signatures when ``image_signatures`` is False (each costs about a quarter of an
    export's time and a few hundred KB)."""
    import tensorflow as tf

    image_shape = tuple(models.image_shape)
    latent = models.latent_dim
    codings_name = decode_input_name(models)
    images_spec = tf.TensorSpec((None, *image_shape), tf.float32, name="images")
    # Each model function is traced once, as a tf.function of fixed input signature, and
    # called by every signature that needs it (tracing it per signature would make an
    # export with the image signatures take half as long again).
    functions = {name: tf.function(function, input_signature=[images_spec])
                 if name in ("serving_default", "encode") else function
                 for name, function in float_functions(models).items()}

    def from_images(function):
        return lambda images: function(checked_images(images, image_shape))

    def decode(codings):
        return functions["decode"](checked_codings(codings, latent, codings_name))

    signatures = {
        "serving_default": (from_images(functions["serving_default"]), [images_spec]),
        "encode": (from_images(functions["encode"]), [images_spec]),
        "decode": (decode, [tf.TensorSpec((None, latent), tf.float32, name=codings_name)]),
    }
    # Factories, not lambdas with default arguments: a traced function's every argument
    # is part of its signature.
    def from_bytes(function):
        return lambda image_bytes: function(images_from_bytes(image_bytes, image_shape))

    def from_pixels(function):
        return lambda pixels: function(images_from_pixels(pixels, image_shape))

    specs = {"image_bytes": (from_bytes, tf.TensorSpec((None,), tf.string, name="image_bytes")),
             "pixels": (from_pixels, tf.TensorSpec((None, *image_shape), tf.uint8,
                                                   name="pixels"))}
    for name, (float_signature, input_name) in IMAGE_SIGNATURES.items():
        if not image_signatures:
            break
        wrap, spec = specs[input_name]
        signatures[name] = (wrap(functions[float_signature]), [spec])
    if models.variational:

        def generate(count, seed):
            return functions["generate"](checked_scalar(count, "count", "int32", COUNT_CHECKS),
                                         checked_scalar(seed, "seed", "int64"))

        signatures["generate"] = (generate, [tf.TensorSpec((), tf.int32, name="count"),
                                             tf.TensorSpec((), tf.int64, name="seed")])
    return signatures


def build_archive(models, image_signatures: bool = True):
    """A ``keras.export.ExportArchive`` holding the bundle's signatures (one endpoint each;
    ``serving_default`` is registered first, so it is also TF Serving's default)."""
    import keras

    archive = keras.export.ExportArchive()
    for model in (models.encoder, models.decoder, models.whole):
        archive.track(model)
    for name, (function, input_signature) in signature_functions(
            models, image_signatures).items():
        archive.add_endpoint(name=name, fn=function, input_signature=input_signature)
    return archive
