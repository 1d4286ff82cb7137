"""hml_vae.distribute, compat and local_cluster: strategies, TF_CONFIG, multi-worker training
on 127.0.0.1, and runs that resume after SIGTERM and kill -9.

The distributed runs are real processes (the CPU split and collective ops are start-up
settings of TensorFlow, which this pytest process has long started), each bounded by a
timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, call_script, run_script

from hml_vae import compat, distribute, local_cluster
from hml_vae.runs import incomplete_dir

TWO_WORKERS = json.dumps({"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
                          "task": {"type": "worker", "index": 1}})


# --- TF_CONFIG and strategy choice (pure) ---------------------------------------------------


def test_tf_config_gives_the_task_and_the_chief():
    task = distribute.parse_tf_config(TWO_WORKERS)
    assert (task.type, task.index, task.num_workers, task.is_chief) == ("worker", 1, 2, False)
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                  "task": {"type": "worker", "index": 0}}
    assert not distribute.parse_tf_config(json.dumps(with_chief)).is_chief
    assert distribute.read_tf_config({}) is None
    assert distribute.read_tf_config({"TF_CONFIG": " "}) is None


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
    ('{"cluster": {"worker": ["h:1"]}}', 'no "task"'),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker"}}', 'no "task"'),
    ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}',
     "index 2, out of range"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": -1}}',
     "out of range"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
     "does not list"),
    ('{"cluster": {"worker": ["h:1"], "ps": ["h:2"]}, "task": {"type": "ps", "index": 0}}',
     "chief and worker tasks only"),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}',
     "not a host:port"),
])
def test_malformed_tf_config_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        distribute.read_tf_config({"TF_CONFIG": text})
    assert "Expected JSON such as" in str(error.value)


def test_auto_strategy_and_impossible_combinations():
    cluster = distribute.parse_tf_config(TWO_WORKERS)
    assert distribute.resolve_strategy("auto", None) == "default"
    assert distribute.resolve_strategy("auto", None, cpu_replicas=2) == "mirrored"
    assert distribute.resolve_strategy("auto", None, gpu_count=4) == "mirrored"
    assert distribute.resolve_strategy("auto", cluster) == "multi_worker"
    with pytest.raises(ValueError, match="separate models"):
        distribute.resolve_strategy("mirrored", cluster)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.resolve_strategy("multi_worker", None)
    with pytest.raises(ValueError, match="--cpu-replicas 2"):
        distribute.resolve_strategy("default", None, cpu_replicas=2)


def test_global_batch_and_the_last_batch():
    distribute.check_global_batch(2, 2)
    distribute.check_global_batch(64, 3)  # uneven shares (22, 22, 20) train fine
    with pytest.raises(ValueError, match="at least 4") as error:
        distribute.check_global_batch(3, 4)
    assert "multiple" not in str(error.value)
    with pytest.raises(ValueError, match="validation split has 2 image"):
        distribute.check_split_sizes({"validation": 2}, 3)
    distribute.check_split_sizes({"validation": 3}, 3)
    # A last batch smaller than the replica count joins the one before; nothing is dropped.
    assert distribute.last_batch_sizes(130, 64, replicas=3) == [64, 66]
    assert distribute.last_batch_sizes(65, 64, replicas=2) == [65]
    for fine in ((66, 64, 2), (65, 64, 1), (91, 128, 2), (128, 64, 3), (131, 64, 3)):
        assert distribute.last_batch_sizes(*fine) is None


def test_rebatched_validation_keeps_every_image_in_order():
    import numpy as np

    from hml_vae.data import make_pipeline

    images = np.random.default_rng(0).random((130, 4), dtype=np.float32)
    dataset = distribute.with_replica_sized_batches(make_pipeline(images, 64), 130, 64, 3)
    batches = [x.numpy() for x, _ in dataset]
    assert [len(batch) for batch in batches] == [64, 66]
    assert int(dataset.cardinality()) == 2
    np.testing.assert_array_equal(np.concatenate(batches), images)


def test_bad_strategy_options_fail_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{oops")
    result = call_script("train.py", "--model", "vae", "--strategy", "multi_worker",
                         "--output", tmp_path / "run")
    assert result.returncode == 2
    assert "TF_CONFIG is not valid JSON" in result.stderr
    monkeypatch.delenv("TF_CONFIG")
    result = call_script("train.py", "--model", "vae", "--strategy", "nonsense",
                         "--output", tmp_path / "run")
    assert result.returncode == 2 and "invalid choice: 'nonsense'" in result.stderr
    result = call_script("train.py", "--model", "vae", "--cpu-replicas", "0",
                         "--output", tmp_path / "run")
    assert result.returncode == 2 and "expected a positive integer, got 0" in result.stderr
    assert not any(tmp_path.iterdir())


# --- The Keras work-around -----------------------------------------------------------------


def test_compat_patches_only_what_is_broken_and_only_once():
    patched_now = compat.patch_distributed_fit()
    assert set(patched_now) <= set(compat.broken_places())
    assert compat.patch_distributed_fit() == []  # idempotent


class _FixedTrainer:
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        return data_batch


def _fixed_reduce(values, strategy, reduction):
    return strategy.reduce("MEAN", values, axis=None)


def test_compat_leaves_a_fixed_keras_alone():
    fixed = type("trainer", (), {"TensorFlowTrainer": _FixedTrainer,
                                 "reduce_per_replica": staticmethod(_fixed_reduce)})
    assert compat.broken_places(fixed) == []


# --- The local cluster launcher ------------------------------------------------------------


def test_local_cluster_configs_and_strategy_argument():
    ports = local_cluster.free_ports(3)
    assert len(set(ports)) == 3
    tasks = [distribute.parse_tf_config(text) for text in local_cluster.worker_tf_configs(ports)]
    assert [task.is_chief for task in tasks] == [True, False, False]
    assert local_cluster.with_multi_worker_strategy(["--model", "vae"])[-2:] == [
        "--strategy", "multi_worker"]
    with pytest.raises(ValueError, match="--strategy mirrored"):
        local_cluster.with_multi_worker_strategy(["--strategy", "mirrored"])


def test_local_cluster_fails_loudly_when_a_worker_fails(tmp_path):
    result = run_script("launch_local_cluster.py", "--workers", "2", "--", "--model", "nope",
                        "--output", tmp_path / "run", timeout=60)
    assert result.returncode == 2
    # The first failure stops the other worker, which may not have printed anything yet.
    assert re.search(r"^\[worker \d\] ", result.stdout, re.MULTILINE)
    assert re.search(r"error: worker \d failed with exit code 2", result.stdout)


# --- Real distributed training -------------------------------------------------------------


@pytest.mark.slow
def test_mirrored_two_cpu_replicas_match_one_device_for_every_family():
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "distribute_checks.py")],
        capture_output=True, text=True, timeout=400, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results.pop("_replica_noise_differs")  # each replica draws its own ε
    assert set(results) == {"stacked", "tied", "conv", "recurrent", "denoising", "sparse",
                            "hashing", "vae", "conv_vae"}
    for model, by_strategy in results.items():
        single, mirrored = by_strategy["default"], by_strategy["mirrored"]
        assert (single["replicas"], mirrored["replicas"]) == (1, 2)
        # Denoising draws its dropout masks and hashing its coding noise per replica (other
        # draws, same distribution); the sparse penalty sees each replica's half batch.
        # Everything else is the same sum.
        rtol = {"denoising": 1e-2, "hashing": 1e-2, "sparse": 1e-3}.get(model, 1e-5)
        for key in ("loss", "loss_after"):
            assert mirrored[key] == pytest.approx(single[key], rel=rtol), (model, key)
    # 64 images on 3 replicas (22, 22, 20): the reported loss is the mean over all 64; the
    # update weighs the replicas' means equally, a little off the one-device update (an
    # step moves the loss by 1e-3 (vae) to 1e-2 (stacked) relative; 1e-4 sees a wrong update).
    for model in ("stacked", "vae"):
        single, uneven = results[model]["default"], results[model]["uneven"]
        assert uneven["replicas"] == 3
        assert uneven["loss"] == pytest.approx(single["loss"], rel=1e-6), model
        assert uneven["loss_after"] == pytest.approx(single["loss_after"], rel=1e-4), model
        assert uneven["loss_after"] < uneven["loss"], model


@pytest.mark.slow
def test_two_workers_train_the_vae_and_only_the_chief_writes(tmp_path):
    worker_tmp = tmp_path / "tmp"
    worker_tmp.mkdir()
    run_dir = tmp_path / "run"
    result = run_script(
        "launch_local_cluster.py", "--workers", "2", "--timeout", "240", "--",
        "--model", "vae", "--preset", "tiny", "--limit", "500", "--epochs", "1",
        "--no-plots", "--output", run_dir, env={"TMPDIR": str(worker_tmp)}, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "every worker finished" in result.stdout
    # The same loss on both workers: one model, trained in sync.
    epoch_lines = {worker: re.findall(rf"\[worker {worker}\] .*- loss: ([\d.]+)", result.stdout)
                   for worker in (0, 1)}
    assert len(epoch_lines[0]) == 1 and epoch_lines[0] == epoch_lines[1]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "tmp"]
    assert list(worker_tmp.iterdir()) == []  # worker 1's checkpoints were removed
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["replicas"], metrics["epochs_trained"]) == (
        "multi_worker", 2, 1)
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1]
    assert not (run_dir / "checkpoints").exists()


def _wait_for_epochs(history_path, process, count: int, timeout: float = 120) -> int:
    """Polls the run's history.json until it has ``count`` epochs; returns how many."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            epochs = len(json.loads(history_path.read_text())["epoch"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            epochs = 0
        if epochs >= count:
            return epochs
        time.sleep(0.02)
    raise AssertionError(f"no {count} epoch(s) in {history_path} in time "
                         f"(exit code {process.poll()})")


@pytest.mark.slow
def test_sigterm_then_kill_9_then_the_same_command_resumes_every_epoch_once(tmp_path):
    epochs = 8
    run_dir = tmp_path / "run"
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--model", "stacked",
               "--preset", "tiny", "--limit", "2000", "--epochs", str(epochs), "--no-plots",
               "--output", str(run_dir)]
    history_path = incomplete_dir(run_dir) / "history.json"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start():
        return subprocess.Popen(command, cwd=REPO, env=environment, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # SIGTERM: the epoch under way and its checkpoint finish, then a message on resuming.
    process = start()
    _wait_for_epochs(history_path, process, 1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Run the same command again to resume" in stderr
    stopped_after = len(json.loads(history_path.read_text())["epoch"])
    assert 1 <= stopped_after < epochs
    metadata = incomplete_dir(run_dir) / "checkpoints" / "training_metadata.json"
    assert json.loads(metadata.read_text())["epoch"] == stopped_after

    # kill -9 after at least one more epoch: nothing gets to clean up.
    process = start()
    _wait_for_epochs(history_path, process, stopped_after + 1)
    process.kill()
    process.communicate(timeout=60)
    assert not run_dir.exists()

    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming the interrupted run" in result.stderr
    first_epoch = int(re.search(r"Epoch (\d+)/", result.stdout + result.stderr).group(1))
    assert first_epoch > stopped_after  # resumed, not restarted
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == list(range(1, epochs + 1))
    assert len(history["loss"]) == len(history["epoch_seconds"]) == epochs
    assert not incomplete_dir(run_dir).exists()
