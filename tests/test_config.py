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
        ({"dataset": " "}, "dataset must be a data set name"),
        ({"learning_rate": float("inf")}, "learning rate must be a positive number"),
        ({"image_size": (4, 32)}, "image size must be two whole numbers H,W of at least 8"),
        ({"image_shape": (28, 28, 2)}, r"C = 1 \(grayscale\) or 3"),
        ({"streaming": "sometimes"}, "unknown streaming 'sometimes'"),
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


def test_a_flag_of_another_family_that_differs_from_its_default_is_an_error():
    with pytest.raises(ValueError, match=r"--beta does not apply to --model stacked; it is an "
                       r"option of vae, conv_vae"):
        make_config("stacked", beta=2.0)
    with pytest.raises(ValueError, match="--noise does not apply to --model vae"):
        make_config("vae", noise="gaussian")
    # Its default is not an error: nothing misleading is saved.
    assert make_config("stacked", beta=1.0).beta == 1.0


def test_the_family_fills_in_what_depends_on_the_images():
    gray = make_config("vae", "tiny").for_images((28, 28, 1))
    colour = make_config("vae", "tiny").for_images((32, 32, 3))
    assert (gray.likelihood, gray.binarize) == ("bernoulli", "dynamic")
    assert (colour.likelihood, colour.binarize) == ("gaussian", "none")
    # What the user chose is kept.
    chosen = make_config("vae", "tiny", likelihood="gaussian").for_images((28, 28, 1))
    assert (chosen.likelihood, chosen.binarize) == ("gaussian", "none")
    assert make_config("stacked", "tiny").for_images((8, 8, 1)).binarize == "none"
    assert make_config("sparse", sparsity="l1").sparsity_weight == 1e-4


def test_sizes_are_checked_against_the_image_shape():
    make_config("stacked", hidden=(500,), latent_dim=30).for_images((28, 28, 1))
    with pytest.raises(ValueError, match=r"a layer of 500 units after 64 inputs.*"
                       r"e.g. --hidden 16 --latent-dim 4"):
        make_config("stacked", hidden=(500,), latent_dim=30).for_images((8, 8, 1))
    make_config("conv").for_images((8, 12, 1))  # 8 -> 4 -> 2 -> 1
    with pytest.raises(ValueError, match="8×12 pixels are too small for 4 stride-2 blocks"):
        make_config("conv", hidden=(4, 8, 8, 8), latent_dim=4).for_images((8, 12, 1))


def test_a_saved_config_runs_again_with_overrides(tmp_path):
    saved = make_config("vae", "tiny", limit=100).for_images((28, 28, 1))
    again = make_config("vae", base=saved, epochs=3)
    assert again.epochs == 3 and again.limit == 100 and again.image_shape is None
    assert again.likelihood == saved.likelihood
    with pytest.raises(ValueError, match="the saved config is for --model vae, not stacked"):
        make_config("stacked", base=saved)


def test_a_corrupt_config_file_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"{path}: not valid JSON"):
        Config.load(path)


@pytest.mark.parametrize(
    ("values", "message", "flag"),
    [
        ({"epochs": "many"}, "epochs must be a whole number, got 'many'", "--epochs"),
        ({"epochs": 2.5}, "epochs must be a whole number, got 2.5", "--epochs"),
        ({"learning_rate": "fast"}, "learning rate must be a number", "--learning-rate"),
        ({"hidden": [16, 8.5]}, r"hidden must be a list of whole numbers", "--hidden"),
        ({"hidden": 16}, r"hidden must be a list of whole numbers", "--hidden"),
        ({"make_plots": 1}, "make plots must be true or false", "--plots"),
        ({"model": ["vae"]}, r"model must be text, got \['vae'\]", "--model"),
        ({"model": "gan"}, "unknown model 'gan'", "--model"),
        ({"image_shape": [28, 28]}, "image shape must be", None),
    ],
)
def test_a_value_of_the_wrong_type_is_a_config_error_naming_its_flag(values, message, flag):
    from hml_vae.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as raised:
        Config(**{"model": "stacked", **values})
    if flag is not None:
        assert raised.value.flag == flag
