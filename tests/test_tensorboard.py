"""hml_vae.tensorboard: every run's TensorBoard logs, read back with TensorBoard's own
event reader (EventAccumulator): tags, one step per epoch (also after a resume), images of
the run's shape and colours showing what the model makes of fixed validation images.
Greedy stages and semi-supervised phases are checked in their own tests' runs
(test_pretraining.py, test_semi_supervised.py)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard_checks import images, scalars, steps, values

from hml_vae import runs, training
from hml_vae.config import make_config
from hml_vae.errors import Interrupted
from hml_vae.tensorboard import (
    IMAGE_COUNT,
    SAMPLE_COUNT,
    EpochImages,
    ImageLogger,
    event_files,
    image_grid,
    prune_events,
)

LIMIT = 1_000
VAE_TRAIN_TAGS = {"epoch_loss", "epoch_reconstruction_nll", "epoch_kl", "epoch_beta",
                  "epoch_learning_rate"}
PIXEL = 1 / 255  # images are stored as 8-bit PNGs


def open_files_under(directory: Path) -> list[str]:
    """Files this process holds open below ``directory``."""
    targets = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return [target for target in targets if target.startswith(str(directory))]


# --- A VAE run, interrupted and resumed ---------------------------------------------------


class SignalAtEpoch(keras.callbacks.Callback):
    """Sends this process SIGINT as epoch ``epoch`` begins, as Ctrl-C would."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            # Only inside the writer's stop_on_signal: otherwise pytest itself would stop.
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A tiny VAE run of 2 epochs whose first attempt is stopped by Ctrl-C during epoch 2
    and loses that epoch's checkpoint (as a kill between its logs and its checkpoint
    would), so the resumed run trains epoch 2 again. Returns the run directory and the
    first attempt's training scalars."""
    run_dir = tmp_path_factory.mktemp("tensorboard") / "vae"
    config = make_config("vae", "tiny", limit=LIMIT, epochs=2, make_plots=False)
    writer_callbacks = runs.RunWriter.callbacks
    backup = runs.BackupUnlessDiverged.on_epoch_end

    def interrupting(self, stage=None):
        return [*writer_callbacks(self, stage), SignalAtEpoch(1)]

    def losing_epoch_2(self, epoch, logs=None):
        if epoch != 1:
            backup(self, epoch, logs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs.RunWriter, "callbacks", interrupting)
        patch.setattr(runs.BackupUnlessDiverged, "on_epoch_end", losing_epoch_2)
        with pytest.raises(Interrupted):
            training.train_and_evaluate(config, run_dir)
    first_attempt = scalars(runs.incomplete_dir(run_dir) / "logs" / "train")
    training.train_and_evaluate(config, run_dir)
    return run_dir, first_attempt


def test_a_resumed_run_logs_every_epoch_once(vae_run):
    run_dir, first_attempt = vae_run
    assert steps(first_attempt)["epoch_loss"] == [0, 1]  # epoch 2 logged, not checkpointed
    assert not runs.incomplete_dir(run_dir).exists()
    history = json.loads((run_dir / "history.json").read_text())
    train = scalars(run_dir / "logs" / "train")
    validation = scalars(run_dir / "logs" / "validation")
    assert set(train) == VAE_TRAIN_TAGS
    assert set(validation) == {"epoch_loss", "epoch_reconstruction_nll", "epoch_kl"}
    for logged in (train, validation):
        assert all(tag_steps == [0, 1] for tag_steps in steps(logged).values()), logged
    # The first attempt's epoch 1 is kept, the resumed run's epoch 2 replaced its first try.
    assert train["epoch_loss"][0] == first_attempt["epoch_loss"][0]
    for name in ("loss", "reconstruction_nll", "kl", "beta"):
        np.testing.assert_allclose(values(train, f"epoch_{name}"), history[name], rtol=1e-6)
        if name != "beta":
            np.testing.assert_allclose(values(validation, f"epoch_{name}"),
                                       history[f"val_{name}"], rtol=1e-6)
    config = json.loads((run_dir / "config.json").read_text())
    assert values(train, "epoch_learning_rate") == pytest.approx([config["learning_rate"]] * 2)
    # Two event files: the first attempt's was continued, not started over.
    assert len(event_files(run_dir / "logs" / "train")) == 2
    assert open_files_under(run_dir.parent) == []  # every writer closed


def test_vae_images_show_the_validation_images_reconstructed_and_prior_samples(vae_run):
    run_dir, _ = vae_run
    run = runs.load_run(run_dir)
    logged = images(run_dir / "logs" / "images")
    assert steps(logged) == {"reconstructions": [0, 1], "prior_samples": [0, 1]}
    height, width, channels = run.config.image_shape
    _, last = logged["reconstructions"][-1]
    assert last.shape == (2 * height, IMAGE_COUNT * width, channels)
    data, _ = training.load_data(run.config)
    originals = data.valid.head(IMAGE_COUNT)[0]
    models = run.load_models()
    # The top row is the fixed validation images, the bottom row what the trained model
    # (after the last epoch) makes of them; the samples are its generate(16, seed).
    np.testing.assert_allclose(last[:height], image_grid(originals, IMAGE_COUNT), atol=PIXEL)
    np.testing.assert_allclose(last[height:], image_grid(models.reconstruct(originals),
                                                         IMAGE_COUNT), atol=PIXEL)
    _, samples = logged["prior_samples"][-1]
    assert samples.shape == (2 * height, SAMPLE_COUNT // 2 * width, channels)
    np.testing.assert_allclose(
        samples, image_grid(models.generate(SAMPLE_COUNT, run.config.seed), SAMPLE_COUNT // 2),
        atol=PIXEL)
    # The reconstructions are not the images themselves (nor blank).
    assert np.abs(last[height:] - last[:height]).mean() > 0.05


# --- Colour images -------------------------------------------------------------------------


def test_colour_images_are_logged_in_colour(tmp_path):
    rng = np.random.default_rng(0)
    originals = rng.uniform(0, 1, (IMAGE_COUNT, 12, 10, 3)).astype(np.float32)
    logger = ImageLogger(tmp_path, EpochImages(originals, reconstruct=lambda x: x[..., ::-1]))
    for epoch in range(2):
        logger.on_train_begin()
        logger.on_epoch_begin(epoch)
        logger.on_epoch_end(epoch)
        logger.on_train_end()
    logged = images(tmp_path)
    assert steps(logged) == {"reconstructions": [0, 1]}
    _, picture = logged["reconstructions"][-1]
    assert picture.shape == (2 * 12, IMAGE_COUNT * 10, 3)
    # Each tile holds its image's own channels: the bottom row is the top one in BGR.
    np.testing.assert_allclose(picture[:12], image_grid(originals, IMAGE_COUNT), atol=PIXEL)
    np.testing.assert_allclose(picture[12:], picture[:12, :, ::-1], atol=PIXEL)
    assert open_files_under(tmp_path) == []


# --- Pruning what a resumed stage redoes ----------------------------------------------------


def test_prune_events_keeps_the_steps_before_the_resumed_epoch(tmp_path):
    def log(directory, logged):
        writer = tf.summary.create_file_writer(str(directory))
        with writer.as_default():
            for step, value in logged:
                tf.summary.scalar("epoch_loss", value, step=step)
        writer.close()

    log(tmp_path / "train", [(0, 3.0), (1, 2.0), (2, 1.5)])
    log(tmp_path / "train", [(2, 1.4)])  # a later attempt at epoch 3 only
    log(tmp_path / "validation", [(0, 3.5), (1, 2.5)])
    untouched = {path: path.read_bytes() for path in event_files(tmp_path / "validation")}
    prune_events(tmp_path, 2)
    assert scalars(tmp_path / "train") == {"epoch_loss": [(0, 3.0), (1, 2.0)]}
    assert len(event_files(tmp_path / "train")) == 1  # the other held only epoch 3
    assert {path: path.read_bytes() for path in event_files(tmp_path / "validation")} == \
        untouched
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == sorted(
        path.name for path in event_files(tmp_path))  # no temporary file left
