"""The README's and docs/'s commands: every one parses, the cheap ones run.

Every ``.venv/bin/python scripts/...`` line of a fenced ``sh`` block in README.md and
docs/*.md is parsed by its script's own argument parser (train commands also resolve
their config, so a flag or family option that drifted fails here). The commands in CHEAP
run as written, in this process (tests/conftest.py: call_script), in a temporary working
directory. A finished run whose data moved is evaluated and plotted again with
``--data-dir`` (the README's "Run directories" section).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, call_script, load_script, write_idx

from hml_vae import data as data_lib

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PYTHON = ".venv/bin/python"

# Commands run exactly as the README shows them, in this order (each needs the ones before).
CHEAP = [
    "scripts/train.py --model vae --preset tiny --limit 500 --no-plots --output runs/smoke",
    "scripts/evaluate.py runs/smoke --iwae-samples 1000",
    "scripts/plot.py runs/smoke",
    "scripts/train.py --help",
]


def fenced_commands(text: str) -> list[str]:
    """The ``.venv/bin/python scripts/...`` commands of the ```sh blocks, with backslash
    continuations joined, comments and environment assignments dropped, without the
    interpreter: ``scripts/NAME.py ARGS``."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if PYTHON + " scripts/" not in line:
                continue
            commands.append(" ".join(line[line.index(PYTHON) + len(PYTHON):].split()))
    return commands


def all_commands() -> list[tuple[str, str]]:
    return [(document.name, command) for document in DOCUMENTS
            for command in fenced_commands(document.read_text())]


def parse_train_arguments(arguments: list[str], saved_config: Path):
    """A train.py command's config, as the script would resolve it (nothing trained)."""
    from hml_vae import cli

    arguments = [str(saved_config) if argument.endswith("config.json") else argument
                 for argument in arguments]
    args = cli.train_parser().parse_args(arguments)
    return cli.config_from_args(args)


def parse_command(command: str, saved_config: Path) -> None:
    """Parses one documented command with its script's own parser; raises on drift."""
    script, *arguments = shlex.split(command)
    name = Path(script).name
    if name == "train.py":
        parse_train_arguments(arguments, saved_config)
    elif name == "pretrain_greedy.py":
        train_arguments = load_script(name).train_arguments(arguments)
        parse_train_arguments(train_arguments, saved_config)
    elif name == "launch_local_cluster.py":
        load_script(name).parse_args(arguments)
        parse_train_arguments(arguments[arguments.index("--") + 1:], saved_config)
    else:
        load_script(name).parse_args(arguments)


def test_the_documents_have_commands_and_the_cheap_ones_are_among_them():
    readme = fenced_commands((REPO / "README.md").read_text())
    for command in CHEAP:
        assert command in readme, f"README.md no longer shows: {command}"
    assert len(all_commands()) > len(CHEAP)


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory):
    """The CHEAP commands run in a fresh working directory: the directory,
    {command: result} and {command: the smoke run's metrics.json after it}."""
    workdir = tmp_path_factory.mktemp("readme")
    metrics_path = workdir / "runs" / "smoke" / "metrics.json"
    results, metrics = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        for command in CHEAP:
            script, *arguments = shlex.split(command)
            results[command] = call_script(Path(script).name, *arguments)
            if metrics_path.exists():
                metrics[command] = json.loads(metrics_path.read_text())
    return workdir, results, metrics


def test_cheap_commands_run_as_written(readme_runs):
    workdir, results, metrics = readme_runs
    for command, result in results.items():
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
    run = workdir / "runs" / "smoke"
    trained, evaluated = metrics[CHEAP[0]], metrics[CHEAP[1]]
    # evaluate.py recomputed the importance-weighted estimate with the K it was given; more
    # draws tighten it (up to Monte-Carlo noise), and it stays below −ELBO.
    assert (trained["iwae_samples"], evaluated["iwae_samples"]) == (8, 1000)
    assert evaluated["test_nll_iwae"] <= trained["test_nll_iwae"] + 0.5
    assert evaluated["test_nll_iwae"] <= evaluated["test_neg_elbo"]
    assert evaluated["train_seconds"] == trained["train_seconds"]  # kept, not recomputed
    assert {"samples.png", "reconstructions.png"} <= {path.name for path in
                                                     (run / "figures").glob("*.png")}
    assert "--iwae-samples" in results["scripts/train.py --help"].stdout


def test_every_documented_command_parses(readme_runs):
    workdir, _, _ = readme_runs
    saved_config = workdir / "runs" / "smoke" / "config.json"
    failures = []
    for document, command in all_commands():
        try:
            parse_command(command, saved_config)
        except SystemExit as exit_:  # argparse: an unknown or malformed flag
            if exit_.code not in (0, None):
                failures.append(f"{document}: {command}: argparse exit {exit_.code}")
        except ValueError as error:
            failures.append(f"{document}: {command}: {error}")
    assert not failures, "\n".join(failures)


# --- A finished run whose data moved ---------------------------------------------------


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory, fashion_raw):
    """A tiny run trained on IDX files at one place, which then moved elsewhere.

    It is trained with the README's ``--patience 1`` at a learning rate of 1e-12, at which
    the float32 weights cannot move: the validation loss never drops below the first
    epoch's, so early stopping ends it after the second of five epochs."""
    root = tmp_path_factory.mktemp("moved")
    original = root / "fashion"
    original.mkdir()
    for key, stem in data_lib.IDX_FILES.items():  # HOML's split needs > 5,000 training images
        count = 5_600 if key.startswith("train") else 1_000
        write_idx(original / stem, fashion_raw[key][:count], compress=False)
    run = root / "run"
    result = call_script("train.py", "--model", "stacked", "--preset", "tiny", "--epochs", "5",
                         "--learning-rate", "1e-12", "--patience", "1", "--limit", "300",
                         # 2-D codings: its latent map needs no t-SNE, the slow figure.
                         "--latent-dim", "2", "--no-plots", "--data-dir", original,
                         "--output", run)
    assert result.returncode == 0, result.stderr[-2000:]
    trained = json.loads((run / "metrics.json").read_text())
    moved = root / "elsewhere"
    original.rename(moved)
    return run, moved, trained


def test_patience_stops_training_early(moved_run):
    run, _, trained = moved_run
    assert json.loads((run / "history.json").read_text())["epoch"] == [1, 2]
    assert trained["epochs_trained"] == 2


def test_a_moved_run_is_an_error_that_names_the_flag_and_changes_nothing(moved_run):
    run, _, _ = moved_run
    before = (run / "metrics.json").read_bytes()
    for script in ("evaluate.py", "plot.py"):
        result = call_script(script, run)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "--data-dir" in result.stderr
    assert (run / "metrics.json").read_bytes() == before


def test_data_dir_wins_over_the_saved_place(moved_run):
    run, moved, trained = moved_run
    result = call_script("evaluate.py", run, "--data-dir", moved)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    # The same test images through the same model: the same number.
    assert metrics["test_mse_per_pixel"] == pytest.approx(trained["test_mse_per_pixel"],
                                                          rel=1e-5)
    assert metrics["data_source"] == str(moved)
    result = call_script("plot.py", run, "--data-dir", moved)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "figures" / "reconstructions.png").stat().st_size > 0


def test_a_location_of_another_kind_of_source_is_refused(moved_run, tmp_path):
    run, moved, _ = moved_run
    before = (run / "metrics.json").read_bytes()
    result = call_script("evaluate.py", run, "--images", moved)
    assert result.returncode == 2
    assert "--images does not fit this run" in result.stderr
    assert "--data-dir" in result.stderr
    # IDX files of other images (16×16): not the run's data set.
    small = tmp_path / "small"
    small.mkdir()
    rng = np.random.default_rng(0)
    for stem, shape in {"train-images-idx3-ubyte": (60, 16, 16),
                        "t10k-images-idx3-ubyte": (20, 16, 16)}.items():
        write_idx(small / stem, rng.integers(0, 256, shape), compress=False)
    for stem, count in {"train-labels-idx1-ubyte": 60, "t10k-labels-idx1-ubyte": 20}.items():
        write_idx(small / stem, rng.integers(0, 10, count), compress=False)
    result = call_script("evaluate.py", run, "--data-dir", small)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "16x16" in result.stderr
    assert (run / "metrics.json").read_bytes() == before


def test_images_of_another_shape_than_the_run_are_refused(moved_run):
    """A folder or .npz source has any image size: the run's image shape is the check."""
    from hml_vae.runs import load_run
    from hml_vae.training import load_run_data

    run, moved, _ = moved_run
    config = dataclasses.replace(load_run(run).config, image_shape=(16, 16, 1))
    with pytest.raises(ValueError, match="are 28×28×1, but the run was trained on 16×16×1"):
        load_run_data(config, data_dir=str(moved))
