"""Multi-worker faults on 127.0.0.1: a worker whose peer never starts gives up after
--cluster-timeout with one line naming the peer, and SIGTERM ends the wait at once.

Real processes with a TF_CONFIG whose peer port nobody listens on; both start together so
that their TensorFlow imports overlap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO

from hml_vae import distribute, local_cluster

TIMEOUT_SECONDS = 5


class Worker:
    """A ``train.py --strategy multi_worker`` process whose stderr lines are timed."""

    def __init__(self, tmp_path, name: str, cluster_timeout: float):
        own, absent = local_cluster.free_ports(2)  # nobody listens on ``absent``
        self.absent = f"127.0.0.1:{absent}"
        self.output = tmp_path / name
        tf_config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{own}", self.absent]},
                                "task": {"type": "worker", "index": 0}})
        environment = {**os.environ, "TF_CONFIG": tf_config, "PYTHONUNBUFFERED": "1",
                       "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "train.py"), "--model", "stacked",
             "--preset", "tiny", "--limit", "100", "--strategy", "multi_worker",
             "--cluster-timeout", str(cluster_timeout), "--output", str(self.output)],
            env=environment, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for_line(self, text: str, timeout: float = 240) -> float:
        """When a stderr line containing ``text`` appeared."""
        deadline = time.monotonic() + timeout
        while True:
            for when, line in list(self.lines):
                if text in line:
                    return when
            if time.monotonic() > deadline or (
                    self.process.poll() is not None and not self.reader.is_alive()):
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r}; stderr: {self.tail()}")

    def finish(self, timeout: float) -> tuple[int, float]:
        code = self.process.wait(timeout=timeout)
        ended = time.monotonic()
        self.reader.join(timeout=5)
        return code, ended

    def tail(self) -> str:
        return "\n".join(line for _, line in self.lines[-8:])


@pytest.fixture(scope="module")
def waiting_workers(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cluster")
    workers = {"absent_peer": Worker(tmp_path, "timeout", TIMEOUT_SECONDS),
               "sigterm": Worker(tmp_path, "sigterm", 300)}
    yield workers
    for worker in workers.values():
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def test_an_absent_peer_times_out_with_one_line_naming_it(waiting_workers):
    worker = waiting_workers["absent_peer"]
    waiting_since = worker.wait_for_line(f"waits up to {TIMEOUT_SECONDS} s")
    assert f"worker 0 of 2 waits up to {TIMEOUT_SECONDS} s (--cluster-timeout) for worker 1 " \
           f"at {worker.absent}" in worker.tail()
    code, _ = worker.finish(timeout=60)
    assert code == 1, worker.tail()
    # The decision is timed; the exit after it is the interpreter unloading TensorFlow.
    gave_up = worker.wait_for_line("did not join", timeout=0)
    assert gave_up - waiting_since < TIMEOUT_SECONDS + 2, worker.tail()
    last = worker.lines[-1][1]
    assert last.startswith(f"error: worker 1 at {worker.absent} did not join the TF_CONFIG "
                           f"cluster within {TIMEOUT_SECONDS} s (--cluster-timeout)"), last
    assert "Traceback" not in worker.tail()
    assert not worker.output.parent.joinpath("timeout.incomplete").exists()
    assert not worker.output.exists()


def test_sigterm_ends_the_wait_at_once(waiting_workers):
    worker = waiting_workers["sigterm"]
    worker.wait_for_line("waits up to 300 s")
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code, _ = worker.finish(timeout=30)
    assert code == 128 + signal.SIGTERM, worker.tail()
    assert worker.wait_for_line("interrupted: SIGTERM", timeout=0) - sent < 2
    assert worker.lines[-1][1] == (f"interrupted: SIGTERM while worker 0 waited for worker 1 at "
                                   f"{worker.absent}; nothing was written."), worker.tail()
    assert list(worker.output.parent.glob("sigterm*")) == []


def test_the_watchdog_ends_with_the_process_that_joined(tmp_path):
    # A create() that returns at once (a cluster that formed): the watchdog is gone and the
    # signal handlers are back.
    task = distribute.parse_tf_config(json.dumps(
        {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}))
    before = signal.getsignal(signal.SIGTERM)
    assert distribute.join_cluster(task, lambda: "strategy", timeout=1) == "strategy"
    assert signal.getsignal(signal.SIGTERM) is before
    time.sleep(1.5)  # past the watchdog's timeout: no SIGALRM reached this process
