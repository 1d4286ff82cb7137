"""hml_vae.cli: argument types shared by the scripts and benchmarks."""

from __future__ import annotations

import argparse

import pytest

from hml_vae import cli, families
from hml_vae import config as config_module


def test_name_list_keeps_the_order_and_rejects_unknown_or_empty_names():
    families = cli.name_list(("stacked", "vae", "conv"), "families")
    assert families("vae, stacked") == ("vae", "stacked")
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown families \['dense'\].*"
                       r"stacked,vae,conv"):
        families("vae,dense")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown families"):
        families(" , ")


def test_every_config_field_has_a_flag_and_every_flag_a_field():
    parser = cli.train_parser()
    flags = {option for action in parser._actions for option in action.option_strings
             if option.startswith("--") and not option.startswith("--no-")}
    flags -= {"--help", *cli.RUN_FLAGS}
    generated = cli.config_flags()
    assert flags == set(generated)
    cli_fields = {field.name for field in config_module.fields()
                  if field.metadata.get("cli", True)}
    assert set(generated.values()) == cli_fields
    # The only field without a flag is the one the run derives from its data.
    assert {field.name for field in config_module.fields()} - cli_fields == {"image_shape"}


def test_help_texts_come_from_the_fields_with_their_defaults():
    help_text = " ".join(cli.train_parser().format_help().split())
    assert ("--latent-dim LATENT_DIM size of the coding (the latent space of VAEs) "
            "(default: 30;") in help_text
    assert "[vae, conv_vae]" in help_text
    for name in families.names():
        assert name in help_text


def parse(*argv):
    return cli.config_from_args(cli.train_parser().parse_args([*argv, "--output", "x"]))


def test_flags_override_the_preset_and_a_saved_config(tmp_path):
    config = parse("--model", "vae", "--preset", "tiny", "--epochs", "3", "--no-plots",
                   "--image-size", "32,40", "--hidden", "20,10")
    assert (config.epochs, config.make_plots, config.image_size, config.hidden) == (
        3, False, (32, 40), (20, 10))
    assert config.latent_dim == families.get("vae").presets["tiny"]["latent_dim"]
    path = tmp_path / "config.json"
    config.save(path)
    again = parse("--config", str(path), "--epochs", "5")
    assert again.epochs == 5 and again.hidden == (20, 10) and again.model == "vae"


def test_bad_combinations_are_one_line_errors():
    with pytest.raises(ValueError, match="no model given"):
        parse("--epochs", "2")
    with pytest.raises(ValueError, match="--beta does not apply to --model stacked"):
        parse("--model", "stacked", "--beta", "2")
    with pytest.raises(SystemExit):
        parse("--model", "stacked", "--learning-rate", "inf")


def test_every_console_command_names_a_script_with_a_console_function():
    import ast

    import tomllib
    from conftest import REPO

    commands = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    scripts = {path.stem for path in (REPO / "scripts").glob("*.py") if path.stem != "__init__"}
    assert {target.split(":")[0].split(".")[-1] for target in commands.values()} == scripts
    for target in commands.values():
        module, function = target.split(":")
        assert module.startswith("hml_vae_scripts.") and function == "console"
        tree = ast.parse((REPO / "scripts" / f"{module.split('.')[-1]}.py").read_text())
        assert any(isinstance(node, ast.FunctionDef) and node.name == "console"
                   for node in tree.body), target
        assert "sys.path" not in ast.unparse(tree), f"{target} edits sys.path"
