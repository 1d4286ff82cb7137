"""Classifiers on autoencoder encoders: the encoder's coding, a small dense head, softmax.

Any run's encoder works (stacked, tied, conv, recurrent, denoising, sparse, greedy, vae,
conv_vae). The classifier uses a *deterministic* copy of the encoder's computation: for a
VAE the posterior mean ``z_mean`` (no sampling, no KL term), for a denoising autoencoder no
input corruption, for a sparse one no activity penalty. Those are pretraining devices; a
classifier should see clean codings, and its only loss should be the classification loss.

Example:
    >>> models = load_run("runs/stacked").load_models()
    >>> encoder = pretrained_encoder(models.encoder)          # the run's weights
    >>> classifier = build_classifier(encoder, num_classes=10)
    >>> set_encoder_trainable(classifier, False)              # phase 1: head only
    >>> scratch = build_classifier(fresh_encoder(families.build(config).encoder))
"""

from __future__ import annotations

import keras
import numpy as np

ENCODER_NAME = "encoder"
OUTPUT_NAME = "class_probabilities"
# Input corruption of denoising autoencoders: active only in training, so in a classifier
# it would corrupt the labeled images while fine-tuning.
NOISE_LAYERS = (keras.layers.Dropout, keras.layers.GaussianNoise)


def coding_model(encoder: keras.Model) -> keras.Model:
    """The part of ``encoder`` that maps images to one deterministic coding.

    Args:
        encoder: an autoencoder's encoder (one output, the coding) or a VAE's encoder
            (outputs ``[z_mean, z_log_var, z]`` with a layer named ``z_mean``).

    Returns:
        ``encoder`` itself, or for a VAE the sub-model images -> ``z_mean`` (it shares the
        encoder's layers and leaves out ``z_log_var`` and the ``Sampling`` layer).

    Raises:
        ValueError: several outputs but no ``z_mean`` layer to choose.
    """
    if len(encoder.outputs) == 1:
        return encoder
    names = {layer.name for layer in encoder.layers}
    if "z_mean" not in names:
        raise ValueError(
            f"encoder {encoder.name!r} has {len(encoder.outputs)} outputs and no 'z_mean' "
            f"layer; expected one coding (an autoencoder) or [z_mean, z_log_var, z] (a VAE)."
        )
    return keras.Model(encoder.inputs[0], encoder.get_layer("z_mean").output,
                       name=f"{encoder.name}_mean")


def _deterministic_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A fresh copy of ``layer`` without its pretraining-only behaviour (noise, penalty)."""
    if isinstance(layer, NOISE_LAYERS):
        return keras.layers.Identity(name=layer.name)
    config = layer.get_config()
    if config.get("activity_regularizer") is not None:
        config["activity_regularizer"] = None
    return layer.__class__.from_config(config)


def fresh_encoder(encoder: keras.Model) -> keras.Model:
    """The deterministic architecture of ``encoder`` with new, randomly initialised weights.

    Args:
        encoder: any family's encoder (see :func:`coding_model`).

    Returns:
        A Functional model named ``encoder``: images -> coding (B, coding size).
    """
    source = coding_model(encoder)
    clone = keras.models.clone_model(source, clone_function=_deterministic_layer)
    # clone_model keeps the source's name; every classifier finds its encoder by this one.
    return keras.Model(clone.inputs[0], clone.outputs[0], name=ENCODER_NAME)


def pretrained_encoder(encoder: keras.Model) -> keras.Model:
    """:func:`fresh_encoder` with the weights of ``encoder`` copied in, layer by layer.

    The copy is independent: training it leaves ``encoder`` (and the run's files) alone.
    Weights are matched by layer name rather than by position, because noise layers own
    seed-generator state that their identity replacements do not have.
    """
    source = coding_model(encoder)
    copy = fresh_encoder(source)
    for layer in copy.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    return copy


def coding_statistics(codings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit mean and variance of codings (N, units) for the head's normalization.

    A unit that never varies (a dead ReLU) gets variance 1, as in scikit-learn's
    StandardScaler: dividing by its tiny spread would blow up any other input's value.
    """
    codings = np.asarray(codings, dtype=np.float64)
    mean, variance = codings.mean(axis=0), codings.var(axis=0)
    variance[variance < 1e-12] = 1.0
    return mean.astype(np.float32), variance.astype(np.float32)


def build_classifier(encoder: keras.Model, num_classes: int = 10,
                     head_units: tuple[int, ...] = (64,),
                     coding_stats: tuple[np.ndarray, np.ndarray] | None = None,
                     dropout_rate: float = 0.0) -> keras.Model:
    """images -> ``encoder`` -> [standardize] -> Dense(head_units, ReLU)... -> softmax.

    Args:
        encoder: a deterministic encoder from :func:`pretrained_encoder` or
            :func:`fresh_encoder`; it becomes the classifier's sublayer ``encoder``.
        num_classes: size of the softmax.
        head_units: hidden sizes of the head; ``()`` puts the softmax right on the coding.
        coding_stats: (mean, variance) of the encoder's codings (:func:`coding_statistics`);
            given, a fixed ``Normalization`` layer standardizes the codings first. Codings
            of autoencoders come in any scale (a few hundredths after a short training);
            standardized, the head trains with one learning rate for every encoder.
        dropout_rate: dropout before each head layer (0: none).

    Returns:
        A Functional model named ``classifier`` whose output (B, num_classes) holds class
        probabilities.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    if any(isinstance(units, bool) or not isinstance(units, int) or units <= 0
           for units in head_units):
        raise ValueError(f"head sizes must be positive integers, got {list(head_units)}; "
                         f"e.g. (64,), or () for a softmax on the coding.")
    if not 0 <= dropout_rate < 1:
        raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate!r}.")
    images = keras.Input(shape=encoder.input_shape[1:], name="images")
    x = encoder(images)  # (B, 28, 28) -> (B, coding size)
    if coding_stats is not None:
        mean, variance = coding_stats
        x = keras.layers.Normalization(mean=mean, variance=variance,
                                       name="coding_normalization")(x)
    for index, units in enumerate(head_units):
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name=f"head_dropout_{index}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"head_dense_{index}")(x)
    if dropout_rate:
        x = keras.layers.Dropout(dropout_rate, name="head_dropout_out")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(images, outputs, name="classifier")


def classifier_encoder(classifier: keras.Model) -> keras.Model:
    """The ``encoder`` sublayer of a model from :func:`build_classifier`."""
    return classifier.get_layer(ENCODER_NAME)


def set_encoder_trainable(classifier: keras.Model, trainable: bool) -> None:
    """Freezes or unfreezes the classifier's encoder; compile the model afterwards."""
    classifier_encoder(classifier).trainable = trainable
