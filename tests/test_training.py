"""hml_vae.training: a complete run directory, written atomically, resumable."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from hml_vae import data as data_lib
from hml_vae import runs, training
from hml_vae.config import make_config
from hml_vae.data import load_dataset
from hml_vae.errors import Interrupted, RunError

RUN_FILES = {"config.json", "model.keras", "encoder.keras", "decoder.keras", "history.json",
             "metrics.json", "report.md", "figures", "logs"}


def tiny_config(**overrides):
    return make_config("stacked", "tiny", **{"limit": 1_000, "epochs": 2, **overrides})


def test_a_run_writes_every_file_and_reloads(tmp_path):
    run_dir = tmp_path / "run"
    metrics = training.train_and_evaluate(tiny_config(), run_dir)
    assert {path.name for path in run_dir.iterdir()} == RUN_FILES
    assert not runs.incomplete_dir(run_dir).exists()

    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert len(history["loss"]) == len(history["val_loss"]) == 2
    assert all(seconds > 0 for seconds in history["epoch_seconds"])
    assert history["loss"][1] < history["loss"][0]

    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == metrics
    assert 0 < saved["test_mse_per_pixel"] < 0.2  # pixels in [0, 1]; the mean image ~0.03
    assert saved["train_seconds"] == pytest.approx(sum(history["epoch_seconds"]))

    images = load_dataset(limit=1_000).test.images[:16]
    model = keras.saving.load_model(run_dir / "model.keras")
    encoder = keras.saving.load_model(run_dir / "encoder.keras")
    decoder = keras.saving.load_model(run_dir / "decoder.keras")
    np.testing.assert_allclose(
        decoder.predict(encoder.predict(images, verbose=0), verbose=0),
        model.predict(images, verbose=0), atol=1e-6,
    )


def test_same_seed_same_run(tmp_path):
    first = training.train_and_evaluate(tiny_config(epochs=1), tmp_path / "a")
    second = training.train_and_evaluate(tiny_config(epochs=1), tmp_path / "b")
    assert first["test_mse_per_pixel"] == pytest.approx(second["test_mse_per_pixel"], rel=1e-5)


def test_an_existing_run_directory_is_refused_and_untouched(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="already exists"):
        training.train_and_evaluate(tiny_config(), run_dir)
    assert [path.name for path in run_dir.iterdir()] == ["keep.txt"]


def test_a_failed_run_leaves_no_finished_directory_and_resumes(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"

    def broken_evaluation(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(training, "evaluate", broken_evaluation)
    with pytest.raises(RuntimeError, match="disk on fire"):
        training.train_and_evaluate(tiny_config(), run_dir)
    assert not run_dir.exists()
    assert (runs.incomplete_dir(run_dir) / "history.json").exists()

    monkeypatch.undo()
    training.train_and_evaluate(tiny_config(), run_dir)
    assert "Resuming" in capsys.readouterr().err
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]


def test_an_interrupted_run_with_another_config_is_not_mixed_in(tmp_path):
    run_dir = tmp_path / "run"
    work_dir = runs.incomplete_dir(run_dir)
    work_dir.mkdir()
    tiny_config(epochs=5).save(work_dir / "config.json")
    with pytest.raises(RunError, match="different settings"):
        training.train_and_evaluate(tiny_config(), run_dir)


def test_a_diverging_run_says_so_and_saves_no_model(tmp_path):
    config = tiny_config(optimizer="sgd", learning_rate=1e12, epochs=3)
    with pytest.raises(RunError, match="training diverged"):
        training.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert not (runs.incomplete_dir(tmp_path / "run") / "model.keras").exists()


def test_history_writer_keeps_each_epoch_once_after_a_resume(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.5]}))
    writer = runs.HistoryWriter(path)
    writer.on_train_begin()
    writer.on_epoch_begin(2)  # epoch 3 was not checkpointed: it is redone
    writer.on_epoch_end(2, {"loss": 1.4})
    assert json.loads(path.read_text())["epoch"] == [1, 2, 3]
    assert json.loads(path.read_text())["loss"] == [3.0, 2.0, 1.4]


def test_a_run_may_resume_under_another_strategy_but_not_another_model():
    config = tiny_config()
    assert training.same_training(config, tiny_config(strategy="mirrored", cpu_replicas=2))
    assert not training.same_training(config, tiny_config(epochs=3))


def test_a_diverged_epoch_is_not_checkpointed(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    backup = runs.BackupUnlessDiverged(str(tmp_path / "checkpoints"))
    backup.set_model(model)
    backup.on_epoch_end(0, {"loss": float("nan")})
    assert not (tmp_path / "checkpoints").exists()
    backup.on_epoch_end(0, {"loss": 0.5})
    assert json.loads((tmp_path / "checkpoints" / "training_metadata.json").read_text())[
        "epoch"] == 1


def test_xla_is_on_by_default_only_where_it_was_measured_faster():
    import tensorflow as tf

    def jit(model, **overrides):
        return training.speed_options(make_config(model, "tiny", **overrides))["jit_compile"]

    assert jit("vae") and jit("stacked")
    assert jit("denoising")  # its noise layers draw from their own state, cheap under XLA
    assert not jit("vae", jit_compile=False) and not jit("denoising", jit_compile=False)
    assert jit("conv", jit_compile=True)
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert not jit("vae")  # one device per replica: not compiled under a strategy
    with pytest.raises(ValueError, match="jit compile"):
        make_config("vae", "tiny", jit_compile="yes")


def test_xla_trains_the_same_vae():
    # The speed settings change how the step runs, not what it computes.
    images = load_dataset(limit=1_000, binarize="static").train.images

    def losses(jit_compile):
        config = make_config("vae", "tiny", seed=3, jit_compile=jit_compile,
                             image_shape=(28, 28, 1))
        keras.utils.set_random_seed(config.seed)
        models = training.build_and_compile(config)
        pipeline = data_lib.make_pipeline(images, config.batch_size, shuffle=True, seed=3)
        return models.whole.fit(pipeline, epochs=2, verbose=0, shuffle=False).history["loss"]

    compiled, plain = losses(True), losses(False)
    np.testing.assert_allclose(compiled, plain, rtol=0.01)


@pytest.mark.parametrize("family", ["stacked", "vae"])
def test_the_training_step_is_traced_once(family):
    """Each trace of the step costs a large part of the first epoch; TensorFlow traces a
    step twice when its first trace creates variables (the optimizer's slots, unless
    compile_model built them)."""
    config = make_config(family, "tiny", batch_size=32, steps_per_execution=4,
                         image_shape=(28, 28, 1))
    models = training.build_and_compile(config)
    traces = []
    step = models.whole.train_step

    def counted_step(batch):
        traces.append(1)
        return step(batch)

    models.whole.train_step = counted_step
    images = load_dataset(limit=1_000).train.images[:8 * 32]
    train = training.TrainingPipeline.of_arrays(images, 32, seed=1)
    models.whole.fit(**training.fit_arguments(models.whole, train), epochs=2, verbose=0,
                     shuffle=False)
    assert len(traces) == 1
    assert int(models.whole.optimizer.iterations) == 16


def test_each_epoch_trains_its_own_steps_in_executions_that_divide_it():
    images = load_dataset(limit=5_000).train.images
    config = make_config("vae", "tiny", batch_size=64, steps_per_execution=32,
                         image_shape=(28, 28, 1))
    # 37 steps (a prime): the whole epoch in one execution; 48 steps: 48 (no divisor in
    # 32..47); 70 steps: 35 a call, two an epoch.
    for steps, executions in ((37, 37), (48, 48), (70, 35)):
        models = training.build_and_compile(config)
        train = training.TrainingPipeline.of_arrays(images[: steps * 64 + 10], 64, seed=1)
        valid = data_lib.make_pipeline(images[:300], 64)
        arguments = training.fit_arguments(models.whole, train, valid)
        assert train.steps == steps and arguments["steps_per_epoch"] == steps
        assert models.whole.steps_per_execution == executions
        models.whole.fit(**arguments, epochs=2, verbose=0)
        assert int(models.whole.optimizer.iterations) == 2 * steps
    assert [training.execution_steps(*case) for case in
            ((429, 32), (1718, 32), (10, 32), (12, 1), (12, 5))] == [33, 859, 10, 1, 6]


@pytest.mark.parametrize("family", ["stacked", "vae"])
def test_one_compiled_loop_per_execution_trains_as_keras_own_loop(family, monkeypatch):
    """The same steps on the same batches, each execution in one call of execution_loop or
    in Keras' per-step loop (stacks over the byte budget): the same weights and losses."""
    images = load_dataset(limit=1_000).train.images[:12 * 32 + 7]
    config = make_config(family, "tiny", batch_size=32, steps_per_execution=4, seed=3,
                         image_shape=(28, 28, 1))

    def fit(budget):
        monkeypatch.setattr(training, "STACKED_EXECUTION_BYTES", budget)
        keras.utils.set_random_seed(3)
        models = training.build_and_compile(config)
        train = training.TrainingPipeline.of_arrays(images, 32, seed=1, binarize="dynamic")
        arguments = training.fit_arguments(models.whole, train)
        fused = models.whole.train_function is not None
        history = models.whole.fit(**arguments, epochs=2, verbose=0, shuffle=False)
        return fused, history.history["loss"], models.whole.get_weights()

    fused, fused_losses, fused_weights = fit(training.STACKED_EXECUTION_BYTES)
    per_step, losses, weights = fit(0)
    assert fused and not per_step
    np.testing.assert_allclose(fused_losses, losses, rtol=1e-5)
    for ours, theirs in zip(fused_weights, weights, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_the_validation_loss_is_over_each_validation_image_once():
    """5 validation batches, 4 steps an execution: the last execution reads one batch and
    stops, every epoch (a repeated validation pipeline would read 8, the first 3 twice)."""
    rng = np.random.default_rng(0)
    train_images, valid_images = rng.random((8 * 16, 6)), rng.random((5 * 16, 6)) * 3
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=4)
    train = training.TrainingPipeline.of_arrays(train_images.astype("float32"), 16, seed=1)
    valid = data_lib.make_pipeline(valid_images.astype("float32"), 16)
    history = model.fit(**training.fit_arguments(model, train, valid), epochs=2, verbose=0,
                        shuffle=False)
    predicted = model.predict(valid_images, verbose=0)
    expected = np.mean((predicted - valid_images) ** 2)
    assert history.history["val_loss"][-1] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("executions", [5, 8])  # 5: 6 steps, two an epoch; 8: 12, one
def test_a_fit_resumed_at_an_epoch_trains_on_that_epochs_batches(executions):
    """Epoch 1 fitted on its own, after epoch 0, ends where two epochs fitted at once end:
    the data of epoch 1 (order and dynamic binary draws) do not depend on where fit
    started."""
    steps = 12
    images = load_dataset(limit=1_000).train.images[: steps * 16 + 5].reshape(-1, 784)

    def model():
        keras.utils.set_random_seed(5)
        whole = keras.Sequential([keras.Input((784,)), keras.layers.Dense(8),
                                  keras.layers.Dense(784, activation="sigmoid")])
        whole.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy",
                      steps_per_execution=executions)
        return whole

    def fit(whole, initial_epoch, epochs):  # a new pipeline, as in a resumed process
        train = training.TrainingPipeline.of_arrays(images, 16, seed=3, binarize="dynamic")
        arguments = training.fit_arguments(whole, train)
        assert whole.steps_per_execution == {5: 6, 8: 12}[executions]
        whole.fit(**arguments, epochs=epochs, initial_epoch=initial_epoch, verbose=0,
                  shuffle=False)

    straight, resumed, first_epoch_only = model(), model(), model()
    fit(straight, 0, 2)
    fit(resumed, 0, 1)
    fit(first_epoch_only, 0, 1)
    fit(resumed, 1, 2)
    assert int(resumed.optimizer.iterations) == 2 * steps
    for first, second, one in zip(straight.weights, resumed.weights, first_epoch_only.weights,
                                  strict=True):
        np.testing.assert_array_equal(np.array(second), np.array(first), err_msg=first.path)
        assert not np.array_equal(np.array(one), np.array(first))  # epoch 1 did train


def test_a_run_interrupted_mid_training_resumes_to_the_uninterrupted_state(tmp_path,
                                                                            monkeypatch):
    """SIGINT in epoch 1 of 3 stops the run after that epoch's checkpoint; the same command
    then ends with the weights (the Sampling layer's RNG state and β among them), optimizer
    state, history and test metrics of a run that was never interrupted."""
    import os
    import signal

    config = make_config("vae", "tiny", limit=300, epochs=3, beta=1.0, warmup_epochs=2,
                         make_plots=False)
    finals = []
    interrupt_in_epoch = {"epoch": None}

    def on_epoch_end(self, epoch, logs=None):
        if epoch == interrupt_in_epoch["epoch"]:
            os.kill(os.getpid(), signal.SIGINT)  # handled by StopOnSignal, as Ctrl-C is
        original_epoch_end(self, epoch, logs)

    def on_train_end(self, logs=None):
        finals.append({"weights": [np.array(v) for v in self.model.weights],
                       "names": [v.path for v in self.model.weights],
                       "optimizer": [np.array(v) for v in self.model.optimizer.variables]})

    original_epoch_end = runs.StopOnSignal.on_epoch_end
    monkeypatch.setattr(runs.StopOnSignal, "on_epoch_end", on_epoch_end)
    monkeypatch.setattr(runs.StopOnSignal, "on_train_end", on_train_end, raising=False)

    straight = training.train_and_evaluate(config, tmp_path / "straight")
    interrupt_in_epoch["epoch"] = 0
    with pytest.raises(Interrupted):
        training.train_and_evaluate(config, tmp_path / "resumed")
    interrupt_in_epoch["epoch"] = None
    stopped = json.loads((runs.incomplete_dir(tmp_path / "resumed") / "history.json")
                         .read_text())
    assert stopped["epoch"] == [1]  # stopped mid-training, not after it finished
    resumed = training.train_and_evaluate(config, tmp_path / "resumed")

    uninterrupted, after_resume = finals[0], finals[-1]
    assert uninterrupted["names"] == after_resume["names"]
    assert any("seed" in name or "state" in name for name in after_resume["names"]), \
        after_resume["names"]  # the Sampling RNG state is among the compared weights
    for name, first, second in zip(uninterrupted["names"], uninterrupted["weights"],
                                   after_resume["weights"], strict=True):
        np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-6, err_msg=name)
    assert len(uninterrupted["optimizer"]) == len(after_resume["optimizer"])
    for first, second in zip(uninterrupted["optimizer"], after_resume["optimizer"],
                             strict=True):
        np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-6)
    histories = [json.loads((tmp_path / name / "history.json").read_text())
                 for name in ("straight", "resumed")]
    for key in histories[0]:
        if key != "epoch_seconds":
            np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-5,
                                       err_msg=key)
    assert histories[1]["beta"] == [0.0, 0.5, 1.0]  # β's warm-up continued where it stopped
    timings = {"train_seconds", "wall_seconds"}
    assert set(straight) == set(resumed)
    for key, value in straight.items():
        if key not in timings and isinstance(value, float):
            assert resumed[key] == pytest.approx(value, rel=1e-5), key
        elif key not in timings:
            assert resumed[key] == value, key
