"""Greedy layer-wise pretraining (HOML ch. 17): train one shallow autoencoder per level, each
on the codings of the level before, stack them into one deep autoencoder and optionally
fine-tune it end to end.

With codings (100, 30): level 0 learns 784 -> 100 -> 784 on the images, level 1 learns
100 -> 30 -> 100 on level 0's codings, and the stack is the stacked model
784 -> 100 -> 30 -> 100 -> 784 (:func:`hml_vae.models.autoencoders.build_stacked`), so a
greedy run directory is used like any other (its config rebuilds the same architecture).

Example:
    >>> config = make_config("greedy", preset="tiny", limit=1000)
    >>> metrics = pretrain_and_evaluate(config, "runs/greedy")
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from hml_vae import data as data_lib
from hml_vae import distribute
from hml_vae.config import Config
from hml_vae.evaluation import evaluate_autoencoder
from hml_vae.models.autoencoders import PIXELS, AutoencoderModels, build_stacked, check_sizes
from hml_vae.plots import plot_run
from hml_vae.training import (
    HistoryWriter,
    check_finite_losses,
    check_run_dir_free,
    fit_arguments,
    make_optimizer,
    prepare_work_dir,
    save_models,
    speed_options,
    write_json,
)


def build_level(input_dim: int, units: int, level: int, activation: str = "relu",
                output_activation: str | None = None) -> keras.Model:
    """One shallow autoencoder: (B, input_dim) -> Dense(units) -> Dense(input_dim).

    Args:
        input_dim: size of the level's inputs (784 pixels, or the previous codings).
        units: size of the level's coding.
        level: its index, used in the layer names ``level_{level}_encoder`` / ``_decoder``.
        activation: of the coding layer.
        output_activation: of the reconstruction; level 0 is linear (pixels, MSE), deeper
            levels reconstruct ReLU codings with ReLU, as the stacked decoder does there.

    Returns:
        The shallow ``keras.Model`` named ``level_{level}``.
    """
    inputs = keras.Input(shape=(input_dim,), name=f"level_{level}_inputs")
    coding = keras.layers.Dense(units, activation=activation, name=f"level_{level}_encoder")
    reconstruction = keras.layers.Dense(input_dim, activation=output_activation,
                                        name=f"level_{level}_decoder")
    return keras.Model(inputs, reconstruction(coding(inputs)), name=f"level_{level}")


def level_encoder(level_model: keras.Model) -> keras.Model:
    """The coding half of a shallow autoencoder from :func:`build_level`."""
    coding_layer = level_model.layers[1]
    return keras.Model(level_model.input, coding_layer.output,
                       name=f"{level_model.name}_encoder")


def train_level(model: keras.Model, inputs: np.ndarray, valid_inputs: np.ndarray,
                config: Config, history_path: Path | None = None) -> dict:
    """Fits one shallow autoencoder to reconstruct ``inputs`` (MSE), with the run's optimizer,
    batch size, epochs and seed.

    Returns:
        The Keras history (loss and val_loss per epoch).
    """
    model.compile(optimizer=make_optimizer(config), loss="mse", **speed_options(config))
    feature_shape = inputs.shape[1:]
    train = data_lib.make_pipeline(inputs, config.batch_size, shuffle=True, seed=config.seed,
                                   image_shape=feature_shape, full_batches=True)
    valid = data_lib.make_pipeline(valid_inputs, config.batch_size, image_shape=feature_shape)
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if history_path is not None:
        callbacks.append(HistoryWriter(history_path))
    history = model.fit(**fit_arguments(model, train, valid), epochs=config.epochs,
                        shuffle=False, callbacks=callbacks,
                        verbose=1 if sys.stdout.isatty() else 2)
    check_finite_losses(history.history.get("loss", []),
                        history_path or Path(f"{model.name} (not written)"))
    return history.history


def pretrain_levels(images: np.ndarray, valid_images: np.ndarray, codings: tuple[int, ...],
                    config: Config, work_dir: Path | None = None) -> list[keras.Model]:
    """Trains the shallow autoencoders, level k on the codings of level k - 1.

    Args:
        images, valid_images: float32 (N, 28, 28) training and validation images.
        codings: coding size of each level, e.g. (100, 30).
        config: optimizer, batch size, epochs per level and seed.
        work_dir: if given, each level writes ``history_level_{k}.json`` there.

    Returns:
        The trained shallow models, one per level (see :func:`build_level`).
    """
    check_sizes(tuple(codings[:-1]), codings[-1])
    inputs = images.reshape(len(images), PIXELS)  # (N, 28, 28) -> (N, 784)
    valid_inputs = valid_images.reshape(len(valid_images), PIXELS)
    levels = []
    for level, units in enumerate(codings):
        model = build_level(inputs.shape[1], units, level,
                            output_activation=None if level == 0 else "relu")
        history_path = work_dir / f"history_level_{level}.json" if work_dir else None
        print(f"Level {level}: {inputs.shape[1]} -> {units} -> {inputs.shape[1]}",
              file=sys.stderr)
        train_level(model, inputs, valid_inputs, config, history_path)
        levels.append(model)
        # The next level learns to reconstruct this level's codings (deterministic).
        encoder = level_encoder(model)
        inputs = encoder.predict(inputs, batch_size=256, verbose=0)
        valid_inputs = encoder.predict(valid_inputs, batch_size=256, verbose=0)
    return levels


def stack_levels(levels: list[keras.Model]) -> AutoencoderModels:
    """The deep autoencoder holding the trained shallow layers' weights (copies).

    Encoder layer k is level k's encoder; the decoder runs the levels' decoders in reverse,
    so its last layer (``decoder_output``) is level 0's decoder.

    Returns:
        :func:`~hml_vae.models.autoencoders.build_stacked`'s models, with the level weights.
    """
    codings = tuple(level.layers[1].units for level in levels)
    models = build_stacked(hidden=codings[:-1], latent_dim=codings[-1])
    encoder_names = [f"encoder_dense_{index}" for index in range(len(codings) - 1)]
    decoder_names = [f"decoder_dense_{index}" for index in range(len(codings) - 1)]
    encoder_names.append("coding")
    decoder_names.append("decoder_output")
    for level, model in enumerate(levels):
        _, encoder_layer, decoder_layer = model.layers
        models.encoder.get_layer(encoder_names[level]).set_weights(encoder_layer.get_weights())
        # decoder_names runs from the coding outwards; level 0's decoder is the last one.
        models.decoder.get_layer(decoder_names[len(levels) - 1 - level]).set_weights(
            decoder_layer.get_weights())
    return models


def fine_tune(models: AutoencoderModels, images: np.ndarray, valid_images: np.ndarray,
              config: Config, history_path: Path) -> dict:
    """Trains the stacked autoencoder end to end for ``config.fine_tune_epochs`` epochs."""
    models.autoencoder.compile(optimizer=make_optimizer(config), loss="mse",
                               **speed_options(config))
    train = data_lib.make_pipeline(images, config.batch_size, shuffle=True, seed=config.seed,
                                   full_batches=True)
    valid = data_lib.make_pipeline(valid_images, config.batch_size)
    history = models.autoencoder.fit(
        **fit_arguments(models.autoencoder, train, valid), epochs=config.fine_tune_epochs,
        shuffle=False,
        callbacks=[HistoryWriter(history_path), keras.callbacks.TerminateOnNaN()],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    check_finite_losses(history.history.get("loss", []), history_path)
    return history.history


def summed_epoch_seconds(paths) -> float:
    """Training wall time recorded by :class:`~hml_vae.training.HistoryWriter` files."""
    total = 0.0
    for path in paths:
        if path.exists():
            total += sum(json.loads(path.read_text()).get("epoch_seconds", []))
    return total


def level_curves(level_paths: list[Path], history_path: Path) -> dict:
    """One history for the training-curves figure: ``level_<n>_loss`` per level (and its
    ``val_`` twin), then ``fine_tune_loss`` if the stack was fine-tuned."""
    curves = {}
    for level, path in enumerate(level_paths, start=1):
        for key, values in json.loads(path.read_text()).items():
            if key.endswith("loss"):
                prefix = "val_" if key.startswith("val_") else ""
                curves[f"{prefix}level_{level}_{key.removeprefix('val_')}"] = values
    history = json.loads(history_path.read_text())
    for key, values in history.items():
        if key.endswith("loss"):
            prefix = "val_" if key.startswith("val_") else ""
            curves[f"{prefix}fine_tune_{key.removeprefix('val_')}"] = values
    if history.get("epoch"):
        curves["epoch"] = history["epoch"]
    return curves


def pretrain_and_evaluate(config: Config, run_dir: str | Path) -> dict:
    """Greedy layer-wise pretraining of ``(*config.hidden, config.latent_dim)``, stacking,
    optional fine-tuning, evaluation; writes an ordinary run directory atomically (built
    in ``<run_dir>.incomplete``, renamed when finished).

    An interrupted run is not resumed mid-level: the same command retrains every level in
    the ``.incomplete`` directory.

    Args:
        config: a ``greedy`` config; ``epochs`` trains each level, ``fine_tune_epochs``
            the stack.
        run_dir: where the finished run goes; must not exist yet.

    Returns:
        The metrics written to ``metrics.json``.
    """
    if config.model != "greedy":
        raise ValueError(f"pretrain_and_evaluate needs a 'greedy' config, got model "
                         f"{config.model!r}; train other models with scripts/train.py.")
    run_dir = Path(run_dir)
    check_run_dir_free(run_dir)
    distribution = distribute.setup(config)  # before any tensor exists
    if distribution.name == "multi_worker":
        raise ValueError(
            "greedy pretraining runs in one process (strategy default or mirrored); "
            "multi_worker would need every level's predictions gathered across workers. "
            "Use --strategy mirrored, or train --model stacked with scripts/train.py."
        )
    data = data_lib.load_dataset(config.dataset, config.data_dir, config.limit,
                                 config.binarize, config.seed, config.download)
    keras.utils.set_random_seed(config.seed)
    codings = (*config.hidden, config.latent_dim)
    work_dir = prepare_work_dir(config, run_dir)
    print(f"Greedy pretraining of {codings} on {len(data.train)} {config.dataset} images "
          f"from {data.source}; {distribution.describe()}; run directory {run_dir}",
          file=sys.stderr)
    started = time.perf_counter()
    history_path = work_dir / "history.json"
    # Every model and optimizer below is created in the scope, so each level, the stack
    # and its fine-tuning train on all replicas (--batch-size is the global batch).
    with distribution.strategy.scope():
        levels = pretrain_levels(data.train.images, data.valid.images, codings, config,
                                 work_dir)
        models = stack_levels(levels)
        stacked_metrics = evaluate_autoencoder(models, data)
        if config.fine_tune_epochs:
            fine_tune(models, data.train.images, data.valid.images, config, history_path)
        else:
            write_json(history_path, {})  # no fine-tuning: no epochs of the whole model
    save_models(models, work_dir)

    metrics = evaluate_autoencoder(models, data)
    level_paths = [work_dir / f"history_level_{level}.json" for level in range(len(codings))]
    metrics.update(
        # Before fine-tuning: what the pretrained stack alone reconstructs.
        stacked_valid_mse_per_pixel=stacked_metrics["valid_mse_per_pixel"],
        stacked_test_mse_per_pixel=stacked_metrics["test_mse_per_pixel"],
        train_seconds=summed_epoch_seconds([*level_paths, history_path]),
        wall_seconds=time.perf_counter() - started,
        pretrain_epochs_per_level=config.epochs,
        epochs_trained=len(json.loads(history_path.read_text()).get("epoch", [])),
        train_images=len(data.train),
        data_source=data.source,
    )
    write_json(work_dir / "metrics.json", metrics)
    failures = plot_run(work_dir, config, models, data,
                        level_curves(level_paths, history_path), metrics)
    for name, why in failures.items():
        print(f"warning: figure {name} could not be made: {why}", file=sys.stderr)
    work_dir.rename(run_dir)
    return metrics
