"""hml_vae.config: presets, validation and the config.json round trip."""

from __future__ import annotations

import pytest

from hml_vae.config import Config, make_config


def test_default_preset_is_homls_stacked_recipe():
    config = make_config("stacked")
    assert config.hidden == (100,) and config.latent_dim == 30
    assert (config.epochs, config.batch_size, config.optimizer) == (20, 32, "nadam")


def test_overrides_apply_and_none_keeps_the_preset():
    config = make_config("stacked", "tiny", epochs=3, batch_size=None)
    assert config.epochs == 3
    assert config.batch_size == make_config("stacked", "tiny").batch_size


def test_json_round_trip(tmp_path):
    config = make_config("stacked", "tiny", limit=100, hidden=(20, 10))
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config


def test_unknown_keys_in_a_saved_config_are_an_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model": "stacked", "colour": "red"}')
    with pytest.raises(ValueError, match=r"unknown config keys \['colour'\]"):
        Config.load(tmp_path / "config.json")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive number, got 0"),
        ({"batch_size": -1}, "batch size must be a positive number"),
        ({"limit": 0}, "limit must be a positive number"),
        ({"latent_dim": 0}, "latent dim must be a positive"),
        ({"hidden": (100, 0)}, r"hidden layer sizes must be positive integers, got \[100, 0\]"),
        ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
        ({"optimizer": "adagrad"}, "unknown optimizer"),
    ],
)
def test_bad_values_are_rejected_with_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("stacked", **overrides)


def test_unknown_model_and_preset():
    with pytest.raises(ValueError, match="unknown model 'gan'"):
        make_config("gan")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_config("stacked", "huge")
