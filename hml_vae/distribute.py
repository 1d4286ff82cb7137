"""Which ``tf.distribute`` strategy a run trains under, and the cluster described by TF_CONFIG.

TF_CONFIG is TensorFlow's own way to describe a multi-worker cluster (Kubernetes operators,
Vertex AI and ``scripts/launch_local_cluster.py`` all set it)::

    {"cluster": {"worker": ["host0:12345", "host1:12345"]},
     "task": {"type": "worker", "index": 0}}

The checks here are pure and import no TensorFlow, so a malformed TF_CONFIG or an
impossible combination of options fails before TensorFlow starts; :func:`make_strategy`
then builds the strategy (and must run before TensorFlow's runtime is initialised: logical
CPU devices and collective ops can only be configured at start-up).

Example:
    >>> task = read_tf_config({"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:2222"]},'
    ...                        ' "task": {"type": "worker", "index": 0}}'})
    >>> task.is_chief, task.num_workers
    (True, 1)
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping

from hml_vae.errors import Interrupted, RunError

# MultiWorkerMirroredStrategy uses these task types; "ps" and "evaluator" belong to other
# strategies (parameter servers, side-car evaluation) that hml_vae does not use.
TRAINING_TASK_TYPES = ("chief", "worker")
TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    """This process's place in a TF_CONFIG cluster.

    Attributes:
        type: ``chief`` or ``worker``.
        index: position in ``cluster[type]``.
        cluster: task type -> list of ``host:port`` addresses.
    """

    type: str
    index: int
    cluster: dict[str, tuple[str, ...]]

    @property
    def num_workers(self) -> int:
        """Processes that train (chief and workers)."""
        return sum(len(self.cluster.get(kind, ())) for kind in TRAINING_TASK_TYPES)

    @property
    def is_chief(self) -> bool:
        """TensorFlow's rule: the ``chief`` task if there is one, else worker 0."""
        if "chief" in self.cluster:
            return self.type == "chief"
        return self.type == "worker" and self.index == 0

    @property
    def name(self) -> str:
        return f"{self.type} {self.index}"

    def peers(self) -> dict[str, str]:
        """The other training tasks: name (``worker 1``) -> ``host:port``."""
        return {f"{kind} {index}": address
                for kind in TRAINING_TASK_TYPES
                for index, address in enumerate(self.cluster.get(kind, ()))
                if (kind, index) != (self.type, self.index)}


def _tf_config_error(problem: str, text: str) -> ValueError:
    shown = text if len(text) <= 200 else text[:200] + "..."
    return ValueError(
        f"TF_CONFIG {problem}. Got: {shown!r}. Expected JSON such as {TF_CONFIG_EXAMPLE}; "
        f"fix the variable, or unset it to train in one process."
    )


def _check_address(address, kind: str, text: str) -> str:
    host, _, port = str(address).rpartition(":")
    if not isinstance(address, str) or not host or not port.isdigit():
        raise _tf_config_error(
            f"lists {address!r} in cluster[{kind!r}], which is not a host:port address", text
        )
    return address


def parse_tf_config(text: str) -> ClusterTask:
    """The cluster and task of a TF_CONFIG value.

    Args:
        text: the JSON string of the TF_CONFIG environment variable.

    Returns:
        This process's :class:`ClusterTask`.

    Raises:
        ValueError: bad JSON, no ``cluster`` or ``task``, a task type that does not train
            or is not in the cluster, an index out of range, a malformed address.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise _tf_config_error(f"is not valid JSON ({error})", text) from None
    if not isinstance(value, dict):
        raise _tf_config_error("must be a JSON object", text)
    cluster = value.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error('has no "cluster" (task type -> list of host:port)', text)
    checked = {}
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise _tf_config_error(f"cluster[{kind!r}] must be a non-empty list", text)
        checked[kind] = tuple(_check_address(address, kind, text) for address in addresses)
    task = value.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise _tf_config_error('has no "task" with a "type" and an "index"', text)
    kind, index = task["type"], task["index"]
    if kind not in TRAINING_TASK_TYPES:
        raise _tf_config_error(
            f"gives task type {kind!r}; MultiWorkerMirroredStrategy trains with "
            f"{' and '.join(TRAINING_TASK_TYPES)} tasks only", text
        )
    if kind not in checked:
        raise _tf_config_error(f"gives task type {kind!r}, which the cluster does not list",
                               text)
    if isinstance(index, bool) or not isinstance(index, int) or not (
        0 <= index < len(checked[kind])
    ):
        raise _tf_config_error(
            f"gives task index {index!r}, out of range for the {len(checked[kind])} "
            f"{kind} address(es) of the cluster (0..{len(checked[kind]) - 1})", text
        )
    unused = sorted(set(checked) - set(TRAINING_TASK_TYPES))
    if unused:
        raise _tf_config_error(
            f"lists task types {unused} that MultiWorkerMirroredStrategy does not use", text
        )
    if len(checked.get("chief", ())) > 1:
        raise _tf_config_error("lists more than one chief", text)
    return ClusterTask(type=kind, index=index, cluster=checked)


def read_tf_config(environ: Mapping[str, str] | None = None) -> ClusterTask | None:
    """This process's task from the TF_CONFIG variable, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        return None
    return parse_tf_config(text)


def resolve_strategy(requested: str, task: ClusterTask | None, cpu_replicas: int = 1,
                     gpu_count: int = 0) -> str:
    """The strategy a run uses, ``auto`` resolved, after checking the combination makes sense.

    Args:
        requested: ``auto``, ``default``, ``mirrored`` or ``multi_worker``.
        task: from :func:`read_tf_config`.
        cpu_replicas: logical CPU devices asked for.
        gpu_count: GPUs this process sees.

    Returns:
        ``default``, ``mirrored`` or ``multi_worker``.

    Raises:
        ValueError: a cluster without ``multi_worker`` (every process would train alone and
            write the same run), ``multi_worker`` without a cluster, or ``--cpu-replicas``
            with a strategy that does not use it.
    """
    clustered = task is not None and task.num_workers > 1
    if requested == "auto":
        if clustered:
            requested = "multi_worker"
        elif gpu_count > 1 or cpu_replicas > 1:
            requested = "mirrored"
        else:
            requested = "default"
    if clustered and requested != "multi_worker":
        raise ValueError(
            f"TF_CONFIG describes a cluster of {task.num_workers} workers but --strategy is "
            f"{requested!r}, which would train {task.num_workers} separate models. Use "
            f"--strategy multi_worker (or auto), or unset TF_CONFIG."
        )
    if requested == "multi_worker" and task is None:
        raise ValueError(
            "--strategy multi_worker needs TF_CONFIG to describe the cluster (see README, "
            "'Distributed training and resuming'); on one machine, "
            "scripts/launch_local_cluster.py --workers 2 -- <train args> sets it for you."
        )
    if cpu_replicas > 1 and requested != "mirrored":
        raise ValueError(
            f"--cpu-replicas {cpu_replicas} splits this process's CPU for --strategy "
            f"mirrored, but the strategy is {requested!r}. Use --strategy mirrored (or auto), "
            f"or drop --cpu-replicas (multi_worker uses one CPU device per worker)."
        )
    return requested


def check_global_batch(batch_size: int, replicas: int) -> None:
    """Raises ValueError unless every replica gets at least one image of each batch.

    Any global batch of at least ``replicas`` images works: one that is not a multiple of
    ``replicas`` is split unevenly (64 on 3 replicas: 22, 21 and 21 images).
    """
    if batch_size < replicas:
        raise ValueError(
            f"--batch-size is the global batch, split across {replicas} replicas; "
            f"{batch_size} leaves some replicas without images. Pass --batch-size of at "
            f"least {replicas}."
        )


def check_split_sizes(sizes: Mapping[str, int], replicas: int) -> None:
    """Raises ValueError when a data split has fewer images than there are replicas (one
    would compute a mean over no images: NaN).

    Args:
        sizes: split name (``validation``) -> number of images.
    """
    for name, size in sizes.items():
        if 0 < size < replicas:
            raise ValueError(
                f"the {name} split has {size} image(s), fewer than the {replicas} replicas "
                f"that each need at least one; train on more images (a larger --limit) or "
                f"with fewer replicas."
            )


def last_batch_sizes(images: int, batch_size: int, replicas: int) -> list[int] | None:
    """Batch sizes that use all ``images`` and give every replica at least one image of
    each batch, or None when batches of ``batch_size`` already do.

    A last batch of fewer than ``replicas`` images is merged into the one before it
    (130 images, batches of 64, 3 replicas: 64 and 66 instead of 64, 64 and 2).
    """
    remainder = images % batch_size
    if replicas == 1 or images < batch_size or remainder == 0 or remainder >= replicas:
        return None
    return [batch_size] * (images // batch_size - 1) + [batch_size + remainder]


def with_replica_sized_batches(dataset, images: int, batch_size: int, replicas: int):
    """``dataset`` (``images`` images in batches of ``batch_size``, e.g. a validation
    pipeline) rebatched by :func:`last_batch_sizes` when its last batch is too small."""
    sizes = last_batch_sizes(images, batch_size, replicas)
    if sizes is None:
        return dataset
    import tensorflow as tf

    # One pass: rebatch cycles through the sizes, one cycle per epoch.
    rebatched = dataset.rebatch(tf.constant(sizes, tf.int64))
    return rebatched.apply(tf.data.experimental.assert_cardinality(len(sizes)))


# --- TensorFlow ---------------------------------------------------------------------------


def configure_cpu_replicas(count: int) -> None:
    """Splits the first CPU into ``count`` logical devices (for ``mirrored`` without GPUs).

    Must run before TensorFlow's runtime is initialised; a second call with the same count
    is a no-op.

    Raises:
        ValueError: ``count`` < 1, or TensorFlow already started with another device layout.
    """
    import tensorflow as tf

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"cpu replicas must be a whole number >= 1, got {count!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if len(current or [None]) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:
        raise ValueError(
            f"cannot split the CPU into {count} devices: TensorFlow has already started "
            f"({error}). Pass --cpu-replicas on the command line, or call "
            f"configure_cpu_replicas before anything else uses TensorFlow."
        ) from None


def unreachable(peers: Mapping[str, str], seconds: float = 0.5) -> dict[str, str]:
    """The peers (name -> ``host:port``) on whose address nothing accepts a connection."""
    missing = {}
    for name, address in peers.items():
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
                pass
        except OSError:
            missing[name] = address
    return missing


def listing(peers: Mapping[str, str]) -> str:
    """``worker 1 at host:port, worker 2 at host:port``."""
    return ", ".join(f"{name} at {address}" for name, address in peers.items())


# The watchdog of join_cluster, a separate Python process (stdlib only, starts in ~50 ms):
# argv = parent pid, seconds, peers as JSON. It ends quietly when its stdin closes (the
# parent joined the cluster, failed or died); when time runs out it names the peers that
# still do not answer and ends the parent with SIGALRM.
_WATCHDOG = """
import json, os, select, signal, socket, sys
pid, seconds, peers = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
if not select.select([sys.stdin], [], [], seconds)[0]:
    def answers(address):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=0.5).close()
        except OSError:
            return False
        return True
    missing = {name: address for name, address in peers.items() if not answers(address)}
    who = ", ".join(f"{name} at {address}" for name, address in (missing or peers).items())
    print(f"error: {who} did not join the TF_CONFIG cluster within {seconds:g} s "
          f"(--cluster-timeout); start every worker with the same cluster in TF_CONFIG, or "
          f"give them more time. Nothing was written.", file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGALRM)
"""


class ClusterTimeout(RunError):
    """The other workers of a multi-worker cluster did not start in time."""


def wait_for_peers(task: ClusterTask, timeout: float, log=None) -> float:
    """Waits, in Python, until every peer of ``task`` accepts connections on its address.

    Meanwhile this process listens on its own port (TensorFlow binds it afterwards), so that
    the peers' waits end too. SIGINT and SIGTERM end the wait (the peers are named).

    Returns:
        The seconds left of ``timeout``.

    Raises:
        ClusterTimeout: a peer did not answer within ``timeout`` seconds.
        Interrupted: SIGINT or SIGTERM while waiting (exit code 128 + the signal).
        ValueError: this process's own port is taken.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.monotonic()
    own = task.cluster[task.type][task.index]
    port = int(own.rpartition(":")[2])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
    except OSError as error:
        listener.close()
        raise ValueError(f"{task.name} cannot listen on port {port} of its TF_CONFIG address "
                         f"{own} ({error.strerror}); another process uses it. Stop it, or "
                         f"give this worker another port in TF_CONFIG.") from None

    def stop(number, frame):
        raise Interrupted(f"{signal.Signals(number).name} while {task.name} waited for "
                          f"{listing(unreachable(task.peers()) or task.peers())}; nothing "
                          f"was written.", number)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {number: signal.signal(number, stop)
                for number in (signal.SIGINT, signal.SIGTERM) if in_main_thread}
    try:
        listener.listen(64)
        missing = unreachable(task.peers())
        if missing:
            log(f"{task.name} of {task.num_workers} waits up to {timeout:g} s "
                f"(--cluster-timeout) for {listing(missing)}")
        while missing:
            if time.monotonic() - started > timeout:
                raise ClusterTimeout(
                    f"{listing(missing)} did not join the TF_CONFIG cluster within "
                    f"{timeout:g} s (--cluster-timeout); start every worker with the same "
                    f"cluster in TF_CONFIG, or give them more time. Nothing was written.")
            time.sleep(0.2)
            missing = unreachable(missing)
    finally:
        listener.close()
        for number, handler in previous.items():
            signal.signal(number, handler)
    return max(1.0, timeout - (time.monotonic() - started))


def join_cluster(task: ClusterTask, create: Callable[[], object], timeout: float,
                 log=None):
    """``create()``, which blocks until every worker of the cluster has connected, bounded
    by ``timeout`` seconds.

    TensorFlow waits for the cluster in C++ without returning to Python: neither SIGINT
    nor SIGTERM ended that wait, nor did a Python timer thread run. The peers are therefore
    first awaited in Python (:func:`wait_for_peers`: one line, timeout, SIGINT/SIGTERM);
    TensorFlow's own wait, short once every peer answers, is bounded by a watchdog process
    that, when time runs out, prints which peers do not answer and ends this process with
    SIGALRM. Nothing has been written by then.

    Returns:
        What ``create`` returned.
    """
    timeout = wait_for_peers(task, timeout, log)
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), repr(float(timeout)),
         json.dumps(task.peers())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        return create()
    finally:
        watchdog.stdin.close()
        watchdog.wait()


def make_strategy(name: str, cpu_replicas: int = 1, task: ClusterTask | None = None,
                  cluster_timeout: float = 300.0):
    """The ``tf.distribute.Strategy`` called ``name`` (resolved by :func:`resolve_strategy`).

    ``mirrored`` uses every GPU, or the ``cpu_replicas`` logical CPUs when there is no GPU;
    ``multi_worker`` reads TF_CONFIG (``task``, when given, names its peers) and waits at
    most ``cluster_timeout`` seconds for them (:func:`join_cluster`). Both apply
    :mod:`hml_vae.compat` where the installed Keras needs it. Call it before building any
    model or tensor.
    """
    import tensorflow as tf

    from hml_vae import compat

    if name == "default":
        return tf.distribute.get_strategy()
    compat.patch_distributed_fit()
    if name == "mirrored":
        if cpu_replicas > 1:
            configure_cpu_replicas(cpu_replicas)
        devices = None
        if not tf.config.list_physical_devices("GPU"):
            devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        task = task or read_tf_config()
        return join_cluster(task, tf.distribute.MultiWorkerMirroredStrategy, cluster_timeout)
    raise ValueError(f"unknown strategy {name!r}; expected default, mirrored or multi_worker.")


def gpu_count() -> int:
    """GPUs TensorFlow sees (listing them does not initialise the runtime)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


@dataclasses.dataclass(frozen=True)
class Distribution:
    """The strategy a run trains under and this process's part in it.

    Attributes:
        name: ``default``, ``mirrored`` or ``multi_worker`` (``auto`` resolved).
        strategy: the ``tf.distribute.Strategy``.
        task: this process's cluster task (multi_worker only), else None.
    """

    name: str
    strategy: object
    task: ClusterTask | None = None

    @property
    def replicas(self) -> int:
        """Replicas in sync: the global batch is split into this many parts."""
        return self.strategy.num_replicas_in_sync

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run directory."""
        return self.task is None or self.task.is_chief

    def describe(self) -> str:
        text = f"strategy {self.name} with {self.replicas} replica(s)"
        if self.task is not None:
            role = "chief" if self.task.is_chief else "not the chief"
            text += f"; {self.task.name} of {self.task.num_workers} workers ({role})"
        return text


def setup(config, environ: Mapping[str, str] | None = None) -> Distribution:
    """Checks the config's strategy against TF_CONFIG and builds it.

    Call it before anything else uses TensorFlow (see :func:`make_strategy`).

    Raises:
        ValueError: malformed TF_CONFIG, an impossible combination (see
            :func:`resolve_strategy`), or a global batch smaller than the replica count.
    """
    task = read_tf_config(environ)
    name = resolve_strategy(config.strategy, task, config.cpu_replicas, gpu_count())
    strategy = make_strategy(name, config.cpu_replicas, task, config.cluster_timeout)
    distribution = Distribution(name, strategy, task if name == "multi_worker" else None)
    check_global_batch(config.batch_size, distribution.replicas)
    return distribution


def distribute_options():
    """``tf.data.Options`` for in-memory data under a strategy: shard by DATA.

    The images come from ``from_tensor_slices`` (no files), so AUTO would try file
    sharding, fail and fall back with a warning; DATA is what it falls back to: every
    worker runs the (same-seeded) pipeline and keeps its share of each global batch.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def in_strategy_scope() -> bool:
    """Whether code runs inside a ``tf.distribute`` strategy's scope (not the default)."""
    import tensorflow as tf

    return tf.distribute.has_strategy()
