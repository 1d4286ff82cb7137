"""Greedy layer-wise pretraining (HOML ch. 17): train one shallow autoencoder per level,
each on the codings of the level before, stack them into one deep autoencoder and
optionally fine-tune it end to end.

With codings (100, 30): level 0 learns 784 -> 100 -> 784 on the images, level 1 learns
100 -> 30 -> 100 on level 0's codings, and the stack is the stacked model
784 -> 100 -> 30 -> 100 -> 784 (:func:`hml_vae.families.stacked.build_stacked`), so a
greedy run directory is used like any other. Each level is its own training stage of the
run (``history_level_<k>.json`` and its own checkpoints), so an interrupted run resumes
inside the level it was training; ``history.json`` holds every level's curves and the
fine-tuning's.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from hml_vae.families import blocks
from hml_vae.families.bundle import AutoencoderModels
from hml_vae.families.family import register
from hml_vae.families.stacked import (
    BOOK_STACKED,
    TINY_DENSE,
    build_stacked,
    check_dense,
    dense_family,
    describe_dense,
)
from hml_vae.tensorboard import EpochImages


def build_level(input_dim: int, units: int, level: int, activation: str = "relu",
                output_activation: str | None = None) -> keras.Model:
    """One shallow autoencoder: (B, input_dim) -> Dense(units) -> Dense(input_dim).

    Args:
        input_dim: size of the level's inputs (the pixels, or the previous codings).
        units: size of the level's coding.
        level: its index, used in the layer names ``level_{level}_encoder`` / ``_decoder``.
        output_activation: of the reconstruction; level 0 is linear (pixels, MSE), deeper
            levels reconstruct ReLU codings with ReLU, as the stacked decoder does there.
    """
    inputs = keras.Input(shape=(input_dim,), name=f"level_{level}_inputs")
    coding = keras.layers.Dense(units, activation=activation, name=f"level_{level}_encoder")
    reconstruction = keras.layers.Dense(input_dim, activation=output_activation,
                                        name=f"level_{level}_decoder")
    return keras.Model(inputs, reconstruction(coding(inputs)), name=f"level_{level}")


def level_encoder(level_model: keras.Model) -> keras.Model:
    """The coding half of a shallow autoencoder from :func:`build_level`."""
    return keras.Model(level_model.input, level_model.layers[1].output,
                       name=f"{level_model.name}_encoder")


def stack_levels(image_shape, levels: list[keras.Model]) -> AutoencoderModels:
    """The deep autoencoder holding copies of the trained levels' weights: encoder layer k
    is level k's encoder, the decoder runs the levels' decoders in reverse."""
    codings = tuple(level.layers[1].units for level in levels)
    models = build_stacked(image_shape, hidden=codings[:-1], latent_dim=codings[-1])
    encoder_names = [*(f"encoder_dense_{index}" for index in range(len(codings) - 1)), "coding"]
    decoder_names = [*(f"decoder_dense_{index}" for index in range(len(codings) - 1)),
                     "decoder_output"]
    for level, model in enumerate(levels):
        _, encoder_layer, decoder_layer = model.layers
        models.encoder.get_layer(encoder_names[level]).set_weights(encoder_layer.get_weights())
        # decoder_names runs from the coding outwards; level 0's decoder is the last one.
        models.decoder.get_layer(decoder_names[len(levels) - 1 - level]).set_weights(
            decoder_layer.get_weights())
    return models


def reconstruct_through(levels: list[keras.Model], level_model: keras.Model):
    """images -> what the trained ``levels`` and ``level_model`` (the level in training)
    reconstruct: the levels' encoders, ``level_model``, the levels' decoders in reverse."""
    def reconstruct(images: np.ndarray) -> np.ndarray:
        x = images.reshape(len(images), -1)  # (N, H, W, C) -> (N, H·W·C)
        for level in levels:
            x = level.layers[1](x)
        x = level_model(x, training=False)
        for level in reversed(levels):
            x = level.layers[2](x)
        return np.asarray(x).reshape(images.shape)

    return reconstruct


def pretrain_levels(trainer, images: np.ndarray, valid_images: np.ndarray,
                    codings: tuple[int, ...],
                    learning_rates: tuple[float, ...] | None = None) -> list[keras.Model]:
    """Trains the shallow autoencoders, level k on the codings of level k - 1, each as the
    run's stage ``level_<k>``, at its rate of ``learning_rates`` (default the config's);
    TensorBoard shows the images the stack so far reconstructs."""
    inputs = images.reshape(len(images), -1)  # (N, H, W, C) -> (N, H·W·C)
    valid_inputs = valid_images.reshape(len(valid_images), -1)
    levels = []
    for level, units in enumerate(codings):
        model = build_level(inputs.shape[1], units, level,
                            output_activation=None if level == 0 else "relu")
        learning_rate = level_learning_rate(learning_rates, level)
        trainer.log(f"level {level}: {inputs.shape[1]} -> {units} -> {inputs.shape[1]}"
                    + ("" if learning_rate is None else f", learning rate {learning_rate:g}"))
        trainer.compile(model, loss="mse", learning_rate=learning_rate)
        images_shown = EpochImages(trainer.validation_images(),
                                   reconstruct_through(list(levels), model))
        trainer.fit_arrays(model, inputs, valid_inputs, stage=f"level_{level}",
                           images=images_shown)
        levels.append(model)
        # The next level learns to reconstruct this level's codings (deterministic).
        encoder = level_encoder(model)
        inputs = encoder.predict(inputs, batch_size=256, verbose=0)
        valid_inputs = encoder.predict(valid_inputs, batch_size=256, verbose=0)
    return levels


def train(config, trainer):
    """The greedy run: levels, stack, optional fine-tuning.

    Returns:
        (the stacked models, extra metrics, the history for the training curves).
    """
    data = trainer.data
    train_images, _ = data.train.head(len(data.train))
    valid_images, _ = data.valid.head(len(data.valid))
    codings = (*config.hidden, config.latent_dim)
    levels = pretrain_levels(trainer, train_images, valid_images, codings,
                             config.level_learning_rates)
    models = stack_levels(config.image_shape, levels)
    test_images, _ = data.test.head(len(data.test))
    extra = {
        # Before fine-tuning: what the pretrained stack alone reconstructs.
        "stacked_valid_mse_per_pixel": mse(models, valid_images),
        "stacked_test_mse_per_pixel": mse(models, test_images),
        "pretrain_epochs_per_level": config.epochs,
    }
    curves = {}
    for level in range(len(codings)):
        curves.update(stage_curves(trainer.stage_history(f"level_{level}"),
                                   f"level_{level + 1}"))
    if config.fine_tune_epochs:
        trainer.compile(models.whole, loss="mse")  # at --learning-rate
        trainer.fit_split(models.whole, epochs=config.fine_tune_epochs, stage="fine_tune",
                          images=trainer.bundle_images(models))
        history = trainer.stage_history("fine_tune")
        curves.update(stage_curves(history, "fine_tune"))
        if history.get("epoch"):
            curves["epoch"] = history["epoch"]
    return models, extra, curves


def level_learning_rate(learning_rates, level: int) -> float | None:
    """Level ``level``'s rate: its entry, the last entry for deeper levels, or None (the
    config's learning rate) without any."""
    if not learning_rates:
        return None
    return learning_rates[min(level, len(learning_rates) - 1)]


def check(config) -> None:
    """The stacked model's size checks, and at most one positive learning rate per level."""
    check_dense(config)
    rates = config.level_learning_rates
    if rates is None:
        return
    levels = len(config.hidden) + 1
    if not 0 < len(rates) <= levels or not all(
            isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate)
            and rate > 0 for rate in rates):
        raise ValueError(
            f"level learning rates must be 1 to {levels} positive numbers, one per level "
            f"(--hidden {','.join(map(str, config.hidden))} --latent-dim {config.latent_dim}; "
            f"deeper levels use the last), got {list(rates)}; e.g. --level-learning-rates "
            f"5e-4,5e-3.")


def mse(models, images: np.ndarray) -> float:
    return float(np.mean((models.reconstruct(images) - images) ** 2))


def stage_curves(history: dict, prefix: str) -> dict:
    """``loss``/``val_loss`` of a stage renamed ``{prefix}_loss``/``val_{prefix}_loss``."""
    curves = {}
    for key, values in history.items():
        if key.endswith("loss"):
            validation = "val_" if key.startswith("val_") else ""
            curves[f"{validation}{prefix}_{key.removeprefix('val_')}"] = values
    return curves


FAMILY = register(dense_family(
    name="greedy",
    summary="greedy layer-wise pretraining of the stacked model: one shallow autoencoder "
            "per coding size, stacked, optionally fine-tuned",
    build=lambda config: build_stacked(blocks.require_image_shape(config), config.hidden,
                                       config.latent_dim),
    # HOML 3rd ed. ch. 17's notebook ("Extra Material – Training one Autoencoder at a
    # Time", train_autoencoder): 10 epochs per level, level 0 (784-100-784, linear output)
    # and level 1 (100-30-100, ReLU output), each compiled with optimizer="nadam", i.e.
    # Nadam's default 1e-3, then the stack fine-tuned end to end for 5 epochs, again at
    # 1e-3. --level-learning-rates gives levels rates of their own.
    presets={"default": {**BOOK_STACKED, "epochs": 10, "fine_tune_epochs": 5},
             "tiny": {**TINY_DENSE, "fine_tune_epochs": 1}},
    options=("fine_tune_epochs", "level_learning_rates"),
    check=check,
    describe=lambda config: f"greedy levels of {describe_dense(config)}",
    train=train,
    # Each level trains on the previous level's codings of every training image.
    needs_memory=True,
))
