"""hml_vae.semi_supervised and scripts/semi_supervised.py: label budgets, the two training
phases, the outputs, resuming an interrupted experiment and the errors that come before any
training."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import REPO, call_script, load_script, run_script
from tensorboard_checks import scalars, steps

from hml_vae import cli, families
from hml_vae import semi_supervised as semi
from hml_vae.classifier import (
    build_classifier,
    classifier_encoder,
    coding_statistics,
    pretrained_encoder,
    set_encoder_trainable,
)
from hml_vae.config import make_config
from hml_vae.data import Dataset, Split
from hml_vae.runs import load_run
from hml_vae.training import train_and_evaluate

LIMIT = 1000
# The scripts import the package from the checkout under test.
SCRIPT_ENV = {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory):
    """A finished tiny stacked run on the first 1,000 training images (5 epochs: after one,
    a frozen 8-unit coding sat at the edge of beating chance with 100 labels)."""
    run_dir = tmp_path_factory.mktemp("semi") / "stacked"
    train_and_evaluate(make_config("stacked", "tiny", limit=LIMIT, epochs=5, make_plots=False),
                       run_dir)
    return run_dir


@pytest.fixture(scope="module")
def script():
    """scripts/semi_supervised.py as a module, to run its main() in this process."""
    return load_script("semi_supervised.py")


# --- Label budgets ----------------------------------------------------------------------

LABELS = np.random.default_rng(1).permutation(np.repeat(np.arange(10), 60))  # 600, balanced


def test_label_subsets_are_class_balanced_with_their_own_balanced_validation_part():
    split = semi.choose_labels(LABELS, 100, seed=0)
    assert (len(split.train), len(split.valid)) == (80, 20)
    np.testing.assert_array_equal(np.bincount(LABELS[split.train], minlength=10), 8)
    np.testing.assert_array_equal(np.bincount(LABELS[split.valid], minlength=10), 2)
    assert not set(split.train) & set(split.valid)


def test_budgets_that_do_not_divide_evenly_differ_by_one_label_per_class():
    split = semi.choose_labels(LABELS, 105, seed=3)
    counts = np.bincount(LABELS[np.concatenate([split.train, split.valid])], minlength=10)
    assert counts.sum() == 105 and set(counts) == {10, 11}


def test_the_same_seed_gives_the_same_subset_and_larger_budgets_contain_smaller_ones():
    first, again = semi.choose_labels(LABELS, 100, seed=7), semi.choose_labels(LABELS, 100, 7)
    np.testing.assert_array_equal(first.train, again.train)
    np.testing.assert_array_equal(first.valid, again.valid)
    other = semi.choose_labels(LABELS, 100, seed=8)
    assert not np.array_equal(first.train, other.train)
    larger = semi.choose_labels(LABELS, 300, seed=7)
    chosen = set(larger.train) | set(larger.valid)
    assert set(first.train) | set(first.valid) <= chosen


def tagged_split(start: int, count: int) -> Split:
    """Images whose first pixel holds a unique id (start, start + 1, ...)."""
    images = np.zeros((count, 28, 28, 1), np.float32)
    images[:, 0, 0, 0] = np.arange(start, start + count)
    return Split(images, np.arange(count) % 10)


def test_labeled_images_come_from_the_training_split_only():
    data = Dataset("fashion_mnist", "test", train=tagged_split(0, 500),
                   valid=tagged_split(1000, 100), test=tagged_split(2000, 200))
    split = semi.choose_labels(data.train.labels, 200, seed=0)
    arrays = semi.labeled_arrays(data, split)
    train_ids = set(arrays["train"][0][:, 0, 0, 0].tolist())
    valid_ids = set(arrays["valid"][0][:, 0, 0, 0].tolist())
    assert train_ids | valid_ids <= set(range(500))  # never validation (1000+) or test (2000+)
    assert not train_ids & valid_ids
    assert (len(train_ids), len(valid_ids)) == (160, 40)
    assert arrays["test"][0] is data.test.images


@pytest.mark.parametrize(
    ("budget", "message"),
    [(5, "smaller than the 10 classes"),
     (15, "each needs one to train on and one to validate with"),
     (601, "larger than the training set of 600 images"),
     (600, "class 0 has only 1")],
)
def test_budgets_that_cannot_be_drawn_are_clear_errors(budget, message):
    labels = np.concatenate([[0], np.repeat(np.arange(1, 10), 60)])[:600]
    labels = np.concatenate([labels, np.full(600 - len(labels), 1)])
    with pytest.raises(ValueError, match=message):
        semi.check_budget(budget, labels if budget == 600 else LABELS, 10)


# --- Training phases --------------------------------------------------------------------


@pytest.fixture(scope="module")
def labeled(encoder_run):
    run = load_run(encoder_run)
    from hml_vae.data import load_dataset

    data = load_dataset(limit=LIMIT)
    split = semi.choose_labels(data.train.labels, 100, seed=0)
    return run, semi.labeled_arrays(data, split)


def make_classifier(run, arrays):
    keras.utils.set_random_seed(0)
    encoder = pretrained_encoder(run.load_models().encoder)
    stats = coding_statistics(np.asarray(encoder(arrays["train"][0])))
    return build_classifier(encoder, head_units=(16,), coding_stats=stats)


def test_frozen_phase_leaves_encoder_weights_bit_identical_and_fine_tuning_changes_them(
        labeled):
    run, arrays = labeled
    classifier = make_classifier(run, arrays)
    encoder = classifier_encoder(classifier)
    before = [weight.copy() for weight in encoder.get_weights()]
    head_before = classifier.get_layer("class_probabilities").get_weights()[0].copy()

    set_encoder_trainable(classifier, False)
    frozen = semi.fit_phase(classifier, arrays["train"], arrays["valid"], epochs=3,
                            learning_rate=1e-2, patience=5, batch_size=32, seed=0)
    for old, new in zip(before, encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert frozen["best_epoch"] >= 1  # the head did learn (validation loss went down)
    assert not np.array_equal(head_before,
                              classifier.get_layer("class_probabilities").get_weights()[0])

    set_encoder_trainable(classifier, True)
    tuned = semi.fit_phase(classifier, arrays["train"], arrays["valid"], epochs=3,
                           learning_rate=1e-2, patience=5, batch_size=32, seed=1)
    assert tuned["epochs_run"] >= 1
    # The phase keeps its best epoch's weights: the encoder's weights changed exactly when
    # a fine-tuning epoch beat the frozen ones (best epoch 0 = the starting weights kept).
    changed = any(not np.array_equal(old, new)
                  for old, new in zip(before, encoder.get_weights(), strict=True))
    assert changed == (tuned["best_epoch"] > 0), tuned


def test_a_phase_that_never_improves_keeps_the_starting_weights(labeled):
    run, arrays = labeled
    classifier = make_classifier(run, arrays)
    start = [weight.copy() for weight in classifier.get_weights()]
    # A learning rate this large only makes the validation loss worse.
    result = semi.fit_phase(classifier, arrays["train"], arrays["valid"], epochs=2,
                            learning_rate=1e4, patience=1, batch_size=32, seed=0)
    assert result["best_epoch"] == 0
    for old, new in zip(start, classifier.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_summary_gives_mean_and_sample_std_per_budget_and_method():
    rows = [{"budget": 100, "seed": seed, "method": "scratch", "test_accuracy": value}
            for seed, value in enumerate([0.5, 0.7])]
    rows.append({"budget": 10, "seed": 0, "method": "scratch", "test_accuracy": 0.3})
    summary = semi.summarize(rows)
    assert [(row["budget"], row["runs"]) for row in summary] == [(10, 1), (100, 2)]
    assert summary[1]["mean"] == pytest.approx(0.6)
    assert summary[1]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert summary[0]["std"] == 0.0


# --- The script -------------------------------------------------------------------------


# Bars of the tiny run below (seed 0), set from its measured distribution: this encoder
# (seed 42) and label seeds 0-3, test accuracy on the 182 test images (2026-12-02, commit
# 0cea5cb; /tmp measurement, not a benchmark):
#   pretrained_frozen      0.275 0.225 0.258 0.269   mean 0.257, sd 0.022
#   pretrained_fine_tuned  0.269 0.214 0.319 0.330   mean 0.283, sd 0.053
#   scratch                0.621 0.555 0.560 0.571   mean 0.577, sd 0.030
#   logistic_regression    0.495 0.505 0.379 0.533   mean 0.478, sd 0.068
# Each bar is about mean - 3 sd (rounded down), above chance (0.1; a method at chance has
# sd 0.022 on 182 images), so a broken method fails and seed noise does not.
TINY_RUN_BARS = {"pretrained_frozen": 0.18, "pretrained_fine_tuned": 0.15, "scratch": 0.45,
                 "logistic_regression": 0.25}


def test_tiny_run_beats_chance_and_writes_all_three_outputs(encoder_run, tmp_path):
    output = tmp_path / "semi"
    result = run_script("semi_supervised.py", "--encoder-run", encoder_run, "--labels", "100",
                        "--seeds", "1", "--limit", LIMIT, "--epochs", "4", "--head", "16",
                        "--output", output, env=SCRIPT_ENV)
    assert result.returncode == 0, result.stderr
    assert {path.name for path in output.iterdir()} == set(semi.OUTPUT_FILES)
    assert not (tmp_path / "semi.incomplete").exists()
    report = json.loads((output / "results.json").read_text())
    rows = report["results"]
    assert {(row["budget"], row["seed"]) for row in rows} == {(100, 0)}
    assert sorted(row["method"] for row in rows) == sorted(semi.METHODS)
    assert (report["num_classes"], report["chance"]) == (10, 0.1)
    for row in rows:
        assert row["test_accuracy"] > TINY_RUN_BARS[row["method"]], row
        assert (row["train_labels"], row["valid_labels"]) == (80, 20)
    markdown = (output / "results.md").read_text()
    assert "| 100 |" in markdown and "±" in markdown
    assert (output / "accuracy_vs_labels.png").read_bytes()[:4] == b"\x89PNG"
    # TensorBoard: each trained method's phase, one step per epoch it ran; its best
    # logged validation loss is the one it kept (unless the starting weights were better).
    cell = output / "logs" / "labels_100_seed_0"
    trained = [row for row in rows if row["method"] != "logistic_regression"]
    assert sorted(path.name for path in cell.iterdir()) == sorted(
        row["method"] for row in trained)
    for row in trained:
        epochs = list(range(row["epochs_run"]))
        assert steps(scalars(cell / row["method"] / "train")) == {
            "epoch_loss": epochs, "epoch_learning_rate": epochs}
        validation = scalars(cell / row["method"] / "validation")
        assert steps(validation) == {"epoch_loss": epochs}
        best = min(loss for _, loss in validation["epoch_loss"])
        if row["best_epoch"]:
            assert row["valid_loss"] == pytest.approx(best, rel=1e-4)
        else:
            assert row["valid_loss"] <= best


def run_in_process(script, capsys, *argv):
    code = cli.run_main(lambda: script.main([str(arg) for arg in argv]))
    return code, capsys.readouterr().err.strip()


def assert_failed_before_training(code, stderr, output, *expected):
    assert code != 0
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: ")
    for text in expected:
        assert text in stderr
    assert not output.exists()
    assert not output.with_name(output.name + ".incomplete").exists()


@pytest.mark.parametrize(
    ("labels", "expected"),
    [("5", "smaller than the 10 classes"),
     ("100,5000", f"larger than the training set of {LIMIT} images")],
)
def test_bad_budgets_fail_before_training(script, encoder_run, tmp_path, capsys,
                                         labels, expected):
    output = tmp_path / "out"
    code, stderr = run_in_process(script, capsys, "--encoder-run", encoder_run, "--labels",
                                  labels, "--limit", LIMIT, "--output", output)
    assert_failed_before_training(code, stderr, output, expected)


def test_encoder_of_another_input_shape_fails_before_training(script, encoder_run, tmp_path,
                                                              capsys):
    run_dir = tmp_path / "flat-run"
    shutil.copytree(encoder_run, run_dir)
    flat = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(8)], name="encoder")
    flat.save(run_dir / "encoder.keras")
    output = tmp_path / "out"
    code, stderr = run_in_process(script, capsys, "--encoder-run", run_dir, "--labels", "100",
                                  "--limit", LIMIT, "--output", output)
    assert_failed_before_training(code, stderr, output, "inputs of shape (784,)",
                                  "images have shape (28, 28, 1)")


def test_run_without_a_finished_encoder_fails_before_training(script, encoder_run, tmp_path,
                                                              capsys):
    interrupted = tmp_path / "interrupted"
    (tmp_path / "interrupted.incomplete").mkdir()
    incomplete = tmp_path / "incomplete"
    shutil.copytree(encoder_run, incomplete)
    (incomplete / "encoder.keras").unlink()
    for run_dir, expected in [(interrupted, "has not finished"),
                              (incomplete, "missing encoder.keras"),
                              (tmp_path / "nowhere", "does not exist")]:
        output = tmp_path / "out"
        code, stderr = run_in_process(script, capsys, "--encoder-run", run_dir,
                                      "--labels", "100", "--limit", LIMIT, "--output", output)
        assert_failed_before_training(code, stderr, output, expected)


def test_existing_output_is_never_overwritten(script, encoder_run, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    code, stderr = run_in_process(script, capsys, "--encoder-run", encoder_run,
                                  "--labels", "100", "--output", output)
    assert code != 0 and "already exists" in stderr
    assert list(output.iterdir()) == []


@pytest.mark.parametrize(
    ("make_output", "expected"),
    [(lambda output: output.write_text("notes"), "already exists (a file)"),
     (lambda output: output.with_name("out.incomplete").mkdir(),
      "holds no settings.json, so it is no interrupted run of this command"),
     (lambda output: output.parent.joinpath("file").write_text(""), "is a file, not a "
      "directory")],
    ids=["output-is-a-file", "foreign-incomplete-directory", "parent-is-a-file"],
)
def test_outputs_the_writer_refuses_fail_before_training(script, encoder_run, tmp_path,
                                                         capsys, make_output, expected):
    output = tmp_path / "out"
    make_output(output)
    if expected.startswith("is a file"):
        output = tmp_path / "file" / "out"
    before = sorted(path.name for path in tmp_path.rglob("*"))
    code, stderr = run_in_process(script, capsys, "--encoder-run", encoder_run,
                                  "--labels", "100", "--limit", LIMIT, "--output", output)
    assert code == 1 and stderr.startswith("error: ") and expected in stderr, stderr
    assert sorted(path.name for path in tmp_path.rglob("*")) == before


def test_an_interrupted_experiment_resumes_with_the_next_cell(script, encoder_run, tmp_path,
                                                              capsys, monkeypatch):
    output = tmp_path / "semi"
    argv = ["--encoder-run", encoder_run, "--labels", "20", "--seeds", "2", "--limit", LIMIT,
            "--epochs", "1", "--head", "16", "--output", output]
    run_cell, cells_run = semi.run_cell, []

    def signalled_run_cell(source, arrays, settings, seed, num_classes, log_dir):
        cells_run.append(seed)
        if len(cells_run) == 1:  # Ctrl-C while the first cell trains
            # Only inside the writer's stop_on_signal: otherwise pytest itself would stop.
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            os.kill(os.getpid(), signal.SIGINT)
        return run_cell(source, arrays, settings, seed, num_classes, log_dir)

    monkeypatch.setattr(semi, "run_cell", signalled_run_cell)
    code, stderr = run_in_process(script, capsys, *argv)
    assert code == 128 + signal.SIGINT
    assert "stopped the experiment after 1 of 2 cells" in stderr
    assert "Run the same command again to resume" in stderr
    assert cells_run == [0]  # the cell under way finished; the next one never started
    assert not output.exists()
    work_dir = output.with_name("semi.incomplete")
    saved = json.loads((work_dir / semi.CELLS_FILE).read_text())
    assert [(cell["budget"], cell["seed"]) for cell in saved] == [(20, 0)]
    assert sorted(row["method"] for row in saved[0]["rows"]) == sorted(semi.METHODS)

    # Other settings do not mix into the interrupted experiment.
    code, stderr = run_in_process(script, capsys, *argv[:-2], "--patience", "3",
                                  "--output", output)
    assert code == 1 and "interrupted run with different settings" in stderr, stderr
    assert cells_run == [0]

    code, stderr = run_in_process(script, capsys, *argv)
    assert code == 0, stderr
    assert "1 of 2 cells already finished" in stderr
    assert cells_run == [0, 1]  # only the second cell ran
    assert {path.name for path in output.iterdir()} == set(semi.OUTPUT_FILES)
    report = json.loads((output / "results.json").read_text())
    assert [row for row in report["results"] if row["seed"] == 0] == saved[0]["rows"]
    assert {row["seed"] for row in report["results"]} == {0, 1}
    assert [row["runs"] for row in report["summary"]] == [2] * len(semi.METHODS)


def test_a_data_set_without_labels_is_a_clear_error():
    unlabeled = Split(np.zeros((20, 28, 28, 1), np.float32), None)
    data = Dataset("pictures", "a folder", train=unlabeled, valid=unlabeled, test=unlabeled)
    with pytest.raises(ValueError, match="has no labels"):
        semi.check_labels(data, Path("runs/pictures"))


def test_a_cell_works_for_any_image_shape_and_number_of_classes():
    """Colour images of 12x12 in three classes (each its own brightness, so learnable)."""
    rng = np.random.default_rng(0)
    num_classes = 3

    def split(count):
        labels = np.arange(count) % num_classes
        images = rng.random((count, 12, 12, 3)) * 0.4 + 0.3 * labels[:, None, None, None]
        return images.astype(np.float32), labels

    config = make_config("stacked", "tiny").for_images((12, 12, 3))
    keras.utils.set_random_seed(0)
    source = semi.EncoderSource(trained=families.build(config).encoder, config=config)
    (train_images, train_labels), test = split(150), split(60)
    labeled = semi.choose_labels(train_labels, 30, seed=0, num_classes=num_classes)
    arrays = {"train": (train_images[labeled.train], train_labels[labeled.train]),
              "valid": (train_images[labeled.valid], train_labels[labeled.valid]),
              "test": test}
    settings = semi.ExperimentSettings(budgets=(30,), seeds=(0,), head_units=(8,),
                                       frozen_epochs=2, fine_tune_epochs=1)
    results = semi.run_cell(source, arrays, settings, seed=0, num_classes=num_classes)
    assert list(results) == list(semi.METHODS)
    for method, values in results.items():
        assert 0 <= values["test_accuracy"] <= 1, method
    assert results["logistic_regression"]["test_accuracy"] > 1 / num_classes


def test_bad_arguments_are_rejected_by_the_parser(tmp_path):
    result = call_script("semi_supervised.py", "--encoder-run", tmp_path, "--labels", "100,x",
                         "--output", tmp_path / "out")
    assert result.returncode == 2 and "comma-separated positive integers" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"budgets": ()}, "label budgets must be positive integers"),
     ({"seeds": (0, 0)}, "seeds must be distinct"),
     ({"validation_fraction": 1.0}, "validation fraction must lie in"),
     ({"fine_tune_learning_rate": 0.0}, "fine tune learning rate must be positive"),
     ({"head_units": (64, -1)}, "head sizes must be positive integers")],
)
def test_settings_no_experiment_can_use_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        semi.ExperimentSettings(**kwargs)
