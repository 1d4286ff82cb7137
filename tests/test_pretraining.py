"""Greedy layer-wise pretraining (hml_vae.families.greedy) through train_and_evaluate: each
level learns the previous level's codings, the stack holds the levels' weights, an
interrupted run resumes in the level it stopped in; scripts/pretrain_greedy.py is an alias
of scripts/train.py --model greedy."""

from __future__ import annotations

import json
import os
import signal

import keras
import numpy as np
import pytest
from conftest import REPO, call_script, load_script, run_script
from tensorboard_checks import images, scalars, steps, values

from hml_vae import training
from hml_vae.config import make_config
from hml_vae.data import load_dataset
from hml_vae.errors import Interrupted
from hml_vae.families import greedy
from hml_vae.runs import RunWriter, incomplete_dir, load_run
from hml_vae.tensorboard import IMAGE_COUNT

LIMIT = 500
# The scripts import the package from the checkout under test.
SCRIPT_ENV = {"PYTHONPATH": str(REPO)}


def greedy_config(**overrides):
    """The tiny preset: levels of 16 and 8 units, batches of 64."""
    return make_config("greedy", "tiny", **{"limit": LIMIT, "make_plots": False, **overrides})


def flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1)  # (N, H, W, C) -> (N, H·W·C)


@pytest.fixture(scope="module")
def greedy_run(tmp_path_factory):
    """A finished greedy run (two levels of two epochs, no fine-tuning) and, per level, the
    inputs it trained on and its trained model."""
    run_dir = tmp_path_factory.mktemp("greedy") / "run"
    seen, learning_rates = {}, {}
    original = training.Trainer.fit_arrays

    def recording_fit_arrays(self, model, inputs, valid_inputs, stage=None, **options):
        history = original(self, model, inputs, valid_inputs, stage, **options)
        seen[stage] = (inputs.copy(), model)
        learning_rates[stage] = float(model.optimizer.learning_rate.numpy())
        return history

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training.Trainer, "fit_arrays", recording_fit_arrays)
        metrics = training.train_and_evaluate(
            greedy_config(epochs=2, fine_tune_epochs=0, level_learning_rates=(2e-3, 4e-3)),
            run_dir)
    return run_dir, metrics, seen, learning_rates


def test_each_level_has_its_history_and_the_run_every_levels_curves(greedy_run):
    run_dir, metrics, _, _ = greedy_run
    for level in (0, 1):
        history = json.loads((run_dir / f"history_level_{level}.json").read_text())
        assert history["epoch"] == [1, 2]
        assert len(history["loss"]) == len(history["val_loss"]) == 2
    curves = json.loads((run_dir / "history.json").read_text())
    for name in ("level_1_loss", "val_level_1_loss", "level_2_loss", "val_level_2_loss"):
        assert len(curves[name]) == 2, name
    assert not (run_dir / "history_fine_tune.json").exists()
    assert not (run_dir / "checkpoints").exists()
    assert not incomplete_dir(run_dir).exists()
    assert metrics["pretrain_epochs_per_level"] == 2
    # Without fine-tuning the saved model is the stack itself.
    assert metrics["valid_mse_per_pixel"] == pytest.approx(
        metrics["stacked_valid_mse_per_pixel"], rel=1e-4)
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_each_level_trains_on_the_previous_codings(greedy_run):
    _, _, seen, _ = greedy_run
    assert sorted(seen) == ["level_0", "level_1"]
    images = load_dataset(limit=LIMIT).train.images
    level_0_inputs, level_0 = seen["level_0"]
    np.testing.assert_array_equal(level_0_inputs, flat(images))
    level_1_inputs, level_1 = seen["level_1"]
    expected = greedy.level_encoder(level_0).predict(level_0_inputs, verbose=0)
    np.testing.assert_allclose(level_1_inputs, expected, rtol=1e-6, atol=1e-6)
    assert level_1_inputs.shape == (LIMIT, 16)
    assert level_1.input_shape == (None, 16) and level_1.output_shape == (None, 16)


def test_each_level_trains_at_its_own_learning_rate(greedy_run):
    *_, learning_rates = greedy_run
    assert learning_rates == {"level_0": pytest.approx(2e-3), "level_1": pytest.approx(4e-3)}


def test_the_default_preset_is_the_notebooks_greedy_recipe():
    config = make_config("greedy")
    # Levels 784-100-784 (linear output) and 100-30-100 (ReLU output) of 10 epochs each,
    # then 5 epochs of the stack, all at Nadam's default 1e-3.
    assert (config.hidden, config.latent_dim, config.epochs, config.batch_size) == (
        (100,), 30, 10, 32)
    assert config.level_learning_rates is None
    assert [greedy.level_learning_rate(config.level_learning_rates, level)
            for level in range(2)] == [None, None]  # None: the config's learning rate
    assert (config.fine_tune_epochs, config.optimizer, config.learning_rate) == (
        5, "nadam", 1e-3)
    with pytest.raises(ValueError, match="level learning rates must be 1 to 2 positive"):
        make_config("greedy", level_learning_rates=(1e-3, 1e-3, 1e-3))
    # Deeper levels than the list go on at its last rate.
    deeper = make_config("greedy", hidden=(150, 100), level_learning_rates=(5e-4, 5e-3))
    assert [greedy.level_learning_rate(deeper.level_learning_rates, level)
            for level in range(3)] == [5e-4, 5e-3, 5e-3]


def test_the_saved_stack_holds_exactly_the_levels_weights(greedy_run):
    run_dir, _, seen, _ = greedy_run
    levels = [seen["level_0"][1], seen["level_1"][1]]
    models = load_run(run_dir).models
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
    # Hence the stack's coding is level 1's coding of level 0's coding.
    images = load_dataset(limit=LIMIT).test.images[:8]
    expected = greedy.level_encoder(levels[1]).predict(
        greedy.level_encoder(levels[0]).predict(flat(images), verbose=0), verbose=0)
    np.testing.assert_allclose(models.coding(images), expected, rtol=1e-5, atol=1e-6)


def test_codings_that_grow_are_refused_before_training():
    with pytest.raises(ValueError, match="undercomplete"):
        make_config("greedy", "tiny", hidden=(16,), latent_dim=32)


# --- Resume -----------------------------------------------------------------------------


class SignalDuringFirstEpoch(keras.callbacks.Callback):
    """Sends this process SIGINT as the first epoch begins, as Ctrl-C would."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0:
            # Only inside the writer's stop_on_signal: otherwise pytest itself would stop.
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            os.kill(os.getpid(), signal.SIGINT)


class RecordWeights(keras.callbacks.Callback):
    def __init__(self, record: list):
        super().__init__()
        self.record = record

    def on_train_end(self, logs=None):
        self.record[:] = [weight.copy() for weight in self.model.get_weights()]


class RecordEpochs(keras.callbacks.Callback):
    def __init__(self, stage: str, record: list):
        super().__init__()
        self.stage, self.record = stage, record

    def on_epoch_begin(self, epoch, logs=None):
        self.record.append((self.stage, epoch))


@pytest.mark.slow
def test_an_interrupted_run_resumes_in_the_level_it_stopped_in(tmp_path, monkeypatch):
    run_dir = tmp_path / "greedy"
    config = greedy_config(epochs=2, fine_tune_epochs=1)
    writer_callbacks = RunWriter.callbacks
    level_0_weights = []

    def interrupting(self, stage=None):
        extra = {"level_0": [RecordWeights(level_0_weights)],
                 "level_1": [SignalDuringFirstEpoch()]}.get(stage, [])
        return [*writer_callbacks(self, stage), *extra]

    monkeypatch.setattr(RunWriter, "callbacks", interrupting)
    with pytest.raises(Interrupted, match="Run the same command again to resume") as stopped:
        training.train_and_evaluate(config, run_dir)
    assert stopped.value.exit_code == 128 + signal.SIGINT
    assert not run_dir.exists()
    work_dir = incomplete_dir(run_dir)
    level_0_history = json.loads((work_dir / "history_level_0.json").read_text())
    assert level_0_history["epoch"] == [1, 2]
    # The epoch under way when the signal came was finished, then training stopped.
    assert json.loads((work_dir / "history_level_1.json").read_text())["epoch"] == [1]

    epochs_run, stacked_levels = [], []

    def counting(self, stage=None):
        return [*writer_callbacks(self, stage), RecordEpochs(stage, epochs_run)]

    def recording_stack(image_shape, levels):
        stacked_levels.extend(levels)
        return stack_levels(image_shape, levels)

    stack_levels = greedy.stack_levels
    monkeypatch.setattr(RunWriter, "callbacks", counting)
    monkeypatch.setattr(greedy, "stack_levels", recording_stack)
    metrics = training.train_and_evaluate(config, run_dir)

    # Level 0 is not trained again: it comes back from its checkpoint, weights and history.
    assert epochs_run == [("level_1", 1), ("fine_tune", 0)]
    assert json.loads((run_dir / "history_level_0.json").read_text()) == level_0_history
    for resumed, trained in zip(stacked_levels[0].get_weights(), level_0_weights,
                                strict=True):
        np.testing.assert_array_equal(resumed, trained)
    assert json.loads((run_dir / "history_level_1.json").read_text())["epoch"] == [1, 2]
    curves = json.loads((run_dir / "history.json").read_text())
    assert curves["epoch"] == [1]
    assert len(curves["level_1_loss"]) == len(curves["level_2_loss"]) == 2
    assert len(curves["fine_tune_loss"]) == 1
    # Fine-tuning the stack end to end improves on the stacked levels.
    assert metrics["valid_mse_per_pixel"] < metrics["stacked_valid_mse_per_pixel"]
    # TensorBoard: each stage in its own directory, each epoch once across the interruption.
    logs = run_dir / "logs"
    assert sorted(path.name for path in logs.iterdir()) == ["fine_tune", "level_0", "level_1"]
    for stage, epochs in (("level_0", 2), ("level_1", 2), ("fine_tune", 1)):
        train = scalars(logs / stage / "train")
        assert steps(train) == {"epoch_loss": list(range(epochs)),
                                "epoch_learning_rate": list(range(epochs))}
        assert steps(scalars(logs / stage / "validation")) == {"epoch_loss": list(range(epochs))}
        np.testing.assert_allclose(values(train, "epoch_loss"), json.loads(
            (run_dir / f"history_{stage}.json").read_text())["loss"], rtol=1e-6)
        logged = images(logs / stage / "images")
        assert steps(logged) == {"reconstructions": list(range(epochs))}
        assert logged["reconstructions"][-1][1].shape == (2 * 28, IMAGE_COUNT * 28, 1)


# --- scripts/pretrain_greedy.py ---------------------------------------------------------


@pytest.fixture(scope="module")
def alias():
    """scripts/pretrain_greedy.py as a module."""
    return load_script("pretrain_greedy.py")


def test_codings_become_hidden_and_latent_dim_and_other_flags_pass_through(alias):
    assert alias.train_arguments(["--codings", "100,30", "--output", "RUN"]) == [
        "--model", "greedy", "--hidden", "100", "--latent-dim", "30", "--output", "RUN"]
    assert alias.train_arguments(["--preset", "tiny", "--codings=150,100,30",
                                  "--fine-tune-epochs", "2"]) == [
        "--model", "greedy", "--hidden", "150,100", "--latent-dim", "30",
        "--preset", "tiny", "--fine-tune-epochs", "2"]
    assert alias.train_arguments(["--output", "RUN"]) == ["--model", "greedy", "--output",
                                                          "RUN"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--codings", "100"], "at least two levels"),
     (["--codings", "100,x"], "comma-separated positive integers"),
     (["--codings", "100,30", "--latent-dim", "8"], "--latent-dim: this script always"),
     (["--model=stacked"], "--model: this script always")],
)
def test_flags_the_alias_sets_itself_are_refused(alias, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        alias.train_arguments(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_pretrain_greedy_cli_smoke(tmp_path):
    output = tmp_path / "greedy"
    result = run_script("pretrain_greedy.py", "--preset", "tiny", "--codings", "16,8",
                        "--limit", "1000", "--epochs", "1", "--fine-tune-epochs", "1",
                        "--output", str(output), env=SCRIPT_ENV)
    assert result.returncode == 0, result.stderr
    for name in ("config.json", "model.keras", "encoder.keras", "decoder.keras",
                 "history.json", "history_level_0.json", "history_level_1.json",
                 "history_fine_tune.json", "metrics.json"):
        assert (output / name).is_file(), name
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 < metrics["test_mse_per_pixel"] < 1
    assert metrics["epochs_trained"] == 1
    config = json.loads((output / "config.json").read_text())
    assert (config["model"], config["hidden"], config["latent_dim"]) == ("greedy", [16], 8)
    assert not (tmp_path / "greedy.incomplete").exists()


def test_pretrain_greedy_cli_bad_codings(tmp_path):
    result = call_script("pretrain_greedy.py", "--codings", "16,32",
                         "--output", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "undercomplete" in lines[-1], result.stderr
    assert list(tmp_path.iterdir()) == []
