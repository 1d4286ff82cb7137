"""A multi-worker cluster on this machine: N training processes on 127.0.0.1, one TF_CONFIG
each, their output streamed with a ``[worker i]`` prefix.

It is how ``--strategy multi_worker`` is tried (and tested) without several hosts; on real
hosts each process gets the same TF_CONFIG shape from a cluster manager (see README).

Example:
    >>> exit_code = run_local_cluster(["--model", "vae", "--output", "runs/vae"], workers=2)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def train_script() -> Path:
    """scripts/train.py: installed as ``hml_vae_scripts.train``, or in this checkout."""
    try:
        import hml_vae_scripts.train as installed
    except ImportError:
        return Path(__file__).resolve().parents[1] / "scripts" / "train.py"
    return Path(installed.__file__)

HOST = "127.0.0.1"
# After a worker fails, the others wait in collective ops that never complete: SIGTERM
# first (a clean exit if they can), SIGKILL after this many seconds.
STOP_GRACE_SECONDS = 5.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 right now (the OS picks them;
    another process could take one before the workers bind it, which then fails loudly)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:  # all bound at once, so the ports differ
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def worker_tf_configs(ports: list[int]) -> list[str]:
    """One TF_CONFIG per worker for a cluster of workers on 127.0.0.1 (worker 0 is chief)."""
    cluster = {"worker": [f"{HOST}:{port}" for port in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(len(ports))]


def with_multi_worker_strategy(train_args: list[str]) -> list[str]:
    """The train arguments with ``--strategy multi_worker`` (added when absent).

    Raises:
        ValueError: another strategy was asked for, or TF_CONFIG is set by the caller.
    """
    for index, arg in enumerate(train_args):
        value = None
        if arg == "--strategy" and index + 1 < len(train_args):
            value = train_args[index + 1]
        elif arg.startswith("--strategy="):
            value = arg.split("=", 1)[1]
        if value is not None and value not in ("multi_worker", "auto"):
            raise ValueError(
                f"the workers of a local cluster train with --strategy multi_worker, got "
                f"--strategy {value}; drop it from the train arguments."
            )
        if value is not None:
            return list(train_args)
    return [*train_args, "--strategy", "multi_worker"]


def _stream(process: subprocess.Popen, prefix: str, lock: threading.Lock, out) -> None:
    for line in process.stdout:
        with lock:
            out.write(f"{prefix} {line}" if line.endswith("\n") else f"{prefix} {line}\n")
            out.flush()


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to every live worker, SIGKILL to those still alive after the grace period."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_local_cluster(train_args: list[str], workers: int = 2, timeout: float | None = None,
                      out=None) -> int:
    """Starts ``workers`` processes of ``scripts/train.py train_args`` as one cluster.

    A SIGINT or SIGTERM to this process is passed to every worker once (they finish the
    epoch and its checkpoint, then stop); a second one kills them.

    Args:
        train_args: arguments for ``scripts/train.py`` (``--strategy multi_worker`` added).
        workers: number of worker processes (>= 1); worker 0 is the chief.
        timeout: seconds before every worker is stopped and the run fails (None: no limit).
        out: where the prefixed lines go (default: stdout).

    Returns:
        0 when every worker succeeded; otherwise the first failing worker's exit code
        (1 for a timeout), after the other workers were stopped.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be a whole number >= 1, got {workers!r}.")
    if os.environ.get("TF_CONFIG"):
        raise ValueError("TF_CONFIG is already set; the local cluster sets its own. Unset it.")
    out = out or sys.stdout
    args = with_multi_worker_strategy(train_args)
    configs = worker_tf_configs(free_ports(workers))
    lock = threading.Lock()

    def say(message: str) -> None:
        with lock:
            print(f"[cluster] {message}", file=out, flush=True)

    processes, threads = [], []
    for index, tf_config in enumerate(configs):
        environment = {**os.environ, "TF_CONFIG": tf_config, "PYTHONUNBUFFERED": "1"}
        # Own session: a terminal's Ctrl-C reaches this process only, which passes it on
        # once, so the workers stop together after the same epoch.
        process = subprocess.Popen(
            [sys.executable, str(train_script()), *args], env=environment, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        processes.append(process)
        thread = threading.Thread(target=_stream, daemon=True,
                                  args=(process, f"[worker {index}]", lock, out))
        thread.start()
        threads.append(thread)
    say(f"{workers} worker(s) on {', '.join(json.loads(configs[0])['cluster']['worker'])}")

    signals_seen = []

    def forward(number, frame):
        signals_seen.append(number)
        for process in processes:
            if process.poll() is None:
                process.send_signal(number if len(signals_seen) == 1 else signal.SIGKILL)

    previous = {number: signal.signal(number, forward)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _supervise(processes, timeout, say, signals_seen)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for thread in threads:
            thread.join(timeout=5)


def _supervise(processes, timeout, say, signals_seen: list) -> int:
    """Waits for the workers; stops them all as soon as one fails or time runs out."""
    started = time.monotonic()
    while True:
        codes = [process.poll() for process in processes]
        failed = [(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            index, code = failed[0]
            _stop(processes)
            if signals_seen:
                say(f"interrupted (exit code {code}); run the same command again to resume at "
                    f"the last finished epoch.")
            else:
                say(f"error: worker {index} failed with exit code {code}; stopped the other "
                    f"workers. Its output above (prefixed [worker {index}]) says why.")
            return code if code > 0 else 1
        if all(code == 0 for code in codes):
            say("every worker finished")
            return 0
        if timeout is not None and time.monotonic() - started > timeout:
            _stop(processes)
            say(f"error: the workers did not finish within {timeout:g} s; stopped them.")
            return 1
        time.sleep(0.2)
