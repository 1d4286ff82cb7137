"""Tests of hml_vae.pretraining: each level learns the previous level's codings, the stack
holds the levels' weights, the greedy CLI writes a run directory."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from autoencoder_checks import assert_save_load_identical, real_images
from conftest import run_script

from hml_vae import pretraining
from hml_vae.config import make_config


@pytest.fixture(scope="module")
def pretrained():
    """Two levels (16, 8) trained one epoch each on 256 real images, and the inputs each
    level's training saw."""
    keras.utils.set_random_seed(0)
    config = make_config("greedy", preset="tiny", hidden=(16,), latent_dim=8, batch_size=64)
    seen_inputs = []
    original = pretraining.train_level

    def recording_train_level(model, inputs, valid_inputs, config, history_path=None):
        seen_inputs.append(inputs.copy())
        return original(model, inputs, valid_inputs, config, history_path)

    pretraining.train_level = recording_train_level
    try:
        images = real_images(256)
        levels = pretraining.pretrain_levels(images, real_images(64), (16, 8), config)
    finally:
        pretraining.train_level = original
    return images, levels, seen_inputs


def test_each_level_trains_on_the_previous_codings(pretrained):
    images, levels, seen_inputs = pretrained
    assert len(seen_inputs) == 2
    np.testing.assert_array_equal(seen_inputs[0], images.reshape(len(images), 784))
    level_0_codings = pretraining.level_encoder(levels[0]).predict(seen_inputs[0], verbose=0)
    np.testing.assert_allclose(seen_inputs[1], level_0_codings, rtol=1e-6, atol=1e-6)
    assert seen_inputs[1].shape == (256, 16)
    assert levels[1].input_shape == (None, 16) and levels[1].output_shape == (None, 16)


def test_stack_holds_exactly_the_levels_weights(pretrained):
    _, levels, _ = pretrained
    models = pretraining.stack_levels(levels)
    pairs = [
        (models.encoder.get_layer("encoder_dense_0"), levels[0].get_layer("level_0_encoder")),
        (models.encoder.get_layer("coding"), levels[1].get_layer("level_1_encoder")),
        (models.decoder.get_layer("decoder_dense_0"), levels[1].get_layer("level_1_decoder")),
        (models.decoder.get_layer("decoder_output"), levels[0].get_layer("level_0_decoder")),
    ]
    for stacked_layer, level_layer in pairs:
        for stacked, trained in zip(stacked_layer.get_weights(), level_layer.get_weights(),
                                    strict=True):
            np.testing.assert_array_equal(stacked, trained)
    # Hence the stack's codings are level 1's codings of level 0's codings.
    images = real_images(8)
    flat = images.reshape(8, 784)
    expected = pretraining.level_encoder(levels[1]).predict(
        pretraining.level_encoder(levels[0]).predict(flat, verbose=0), verbose=0)
    np.testing.assert_allclose(models.encode(images), expected, rtol=1e-5, atol=1e-6)


def test_stack_saves_and_fine_tuning_lowers_the_loss(pretrained, tmp_path):
    _, levels, _ = pretrained
    models = pretraining.stack_levels(levels)
    images = real_images(64)
    assert_save_load_identical(models.autoencoder, images, tmp_path)
    models.autoencoder.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    before = models.autoencoder.evaluate(images, images, batch_size=64, verbose=0)
    models.autoencoder.fit(images, images, batch_size=64, epochs=1, verbose=0)
    assert models.autoencoder.evaluate(images, images, batch_size=64, verbose=0) < before


def test_pretrain_rejects_growing_codings():
    config = make_config("greedy", preset="tiny")
    with pytest.raises(ValueError, match="undercomplete"):
        pretraining.pretrain_levels(real_images(8), real_images(8), (16, 32), config)
    with pytest.raises(ValueError, match="greedy"):
        pretraining.pretrain_and_evaluate(make_config("stacked", preset="tiny"), "unused")


@pytest.mark.slow
def test_pretrain_greedy_cli_smoke(tmp_path):
    output = tmp_path / "greedy"
    result = run_script("pretrain_greedy.py", "--preset", "tiny", "--codings", "16,8",
                        "--limit", "1000", "--epochs", "1", "--fine-tune-epochs", "1",
                        "--output", str(output))
    assert result.returncode == 0, result.stderr
    for name in ("config.json", "model.keras", "encoder.keras", "decoder.keras",
                 "history.json", "history_level_0.json", "history_level_1.json",
                 "metrics.json"):
        assert (output / name).is_file(), name
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 < metrics["test_mse_per_pixel"] < 1
    assert metrics["epochs_trained"] == 1
    config = json.loads((output / "config.json").read_text())
    assert (config["model"], config["hidden"], config["latent_dim"]) == ("greedy", [16], 8)
    assert not (tmp_path / "greedy.incomplete").exists()


def test_pretrain_greedy_cli_bad_codings(tmp_path):
    result = run_script("pretrain_greedy.py", "--codings", "16,32",
                        "--output", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "undercomplete" in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []
