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


def test_each_error_class_has_its_line_and_exit_code():
    from hml_vae import errors

    cases = [
        (errors.ConfigError("epochs must be a positive number, got 0.", flag="--epochs"),
         "error: epochs must be a positive number, got 0.", 2),
        (errors.DataError("truncated.", path="data/x"), "error: data/x: truncated.", 2),
        (errors.ServingInputError("images: expected (batch, 28, 28, 1)", flag="images"),
         "error: images: expected (batch, 28, 28, 1)", 2),
        (errors.RunDirectoryError("runs/a does not exist.", path="runs/a"),
         "error: runs/a does not exist.", 1),
        (errors.RunError("training diverged"), "error: training diverged", 1),
        (errors.Interrupted("SIGTERM stopped training", 15),
         "interrupted: SIGTERM stopped training", 143),
        (PermissionError(13, "Permission denied", "runs/a/metrics.json"),
         "error: runs/a/metrics.json: Permission denied", 2),
        (OSError(28, "No space left on device", "runs/a/model.keras"),
         "error: runs/a/model.keras: No space left on device", 1),
        (ValueError("two\n  lines"), "error: two lines", 2),
        (KeyboardInterrupt(), "interrupted; run the same command again to resume from the "
         "last finished epoch.", 130),
    ]
    for error, line, code in cases:
        assert cli.error_line_and_code(error) == (line, code)
    assert cli.error_line_and_code(KeyError("bug")) is None  # a bug keeps its traceback


def test_run_main_prints_one_line_and_debug_the_traceback_too(capsys, monkeypatch):
    from hml_vae.errors import RunDirectoryError

    def main():
        raise RunDirectoryError("not a readable .keras file", path="runs/a/model.keras")

    monkeypatch.setattr("sys.argv", ["evaluate.py", "runs/a"])
    assert cli.run_main(main) == 1
    assert capsys.readouterr().err == (
        "error: runs/a/model.keras: not a readable .keras file\n")
    monkeypatch.setattr("sys.argv", ["evaluate.py", "runs/a", "--debug"])
    assert cli.run_main(main) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("Traceback (most recent call last)")
    assert stderr.endswith("error: runs/a/model.keras: not a readable .keras file\n")
    with pytest.raises(KeyError):
        cli.run_main(lambda: {}["bug"])


def test_debug_after_the_separator_belongs_to_the_command_run():
    assert cli.debug_requested(["--workers", "2", "--debug", "--", "--model", "vae"])
    assert not cli.debug_requested(["--workers", "2", "--", "--model", "vae", "--debug"])
