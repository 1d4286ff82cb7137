"""Work-arounds for Keras 3's ``model.fit`` under ``tf.distribute`` strategies.

Keras 3's TensorFlow trainer fails in two places, both in
``keras/src/backend/tensorflow/trainer.py`` (reproduced with Keras 3.15.1 / TF 2.21):

1. ``TensorFlowTrainer._maybe_symbolic_build`` builds the model from the first distributed
   batch after reducing it with ``strategy.reduce("MEAN", batch, axis=None)``: an
   element-wise mean of the replicas' shares. It fails whenever the shares differ in size
   (``MirroredStrategy`` with a global batch of 64 on 3 replicas: "AddN must have the same
   size and shape", 22 vs 20 images), and across workers it cannot convert a ``PerReplica``
   value in eager mode at all (keras-team/keras#20585, open; tensorflow/tensorflow#72388).
   The build needs only shapes and dtypes, so one local replica's share serves as well.
2. ``reduce_per_replica`` reduces the step's logs across workers with
   ``strategy.reduce("MEAN", value, axis=0)``; the logs are 0-d tensors, which have no
   axis 0. Reducing 0-d values with ``axis=None`` (the mean over replicas) is what is
   meant. Only multi-worker strategies take this path.

:func:`patch_distributed_fit` wraps exactly these two places, and only those of them the
installed Keras still has (it reads their source; a fixed Keras is left alone). The
wrappers change nothing without a strategy, and the second nothing outside multi-worker
mode. Remove this module once Keras builds from one replica's share and #20585 is fixed in
every Keras that hml_vae supports.
"""

from __future__ import annotations

import inspect

ISSUES = (
    "https://github.com/keras-team/keras/issues/20585",
    "https://github.com/tensorflow/tensorflow/issues/72388",
)
_PATCHED_MARK = "_hml_vae_multi_worker_patch"


def _compact_source(function) -> str | None:
    """The function's source without whitespace, or None if Python cannot show it."""
    try:
        return "".join(inspect.getsource(function).split())
    except (OSError, TypeError):
        return None


def broken_places(trainer_module=None) -> list[str]:
    """Which of the two known-broken places the installed Keras still has.

    Returns:
        A subset of ``["symbolic_build", "reduce_per_replica"]``. When the source cannot be
        read, both are assumed broken: the wrappers are correct with a fixed Keras too.
    """
    if trainer_module is None:
        from keras.src.backend.tensorflow import trainer as trainer_module
    build = getattr(trainer_module.TensorFlowTrainer._maybe_symbolic_build, "__wrapped__",
                    trainer_module.TensorFlowTrainer._maybe_symbolic_build)
    reduce = getattr(trainer_module.reduce_per_replica, "__wrapped__",
                     trainer_module.reduce_per_replica)
    broken = []
    build_source = _compact_source(build)
    if build_source is None or "distribute_strategy.reduce(" in build_source:
        broken.append("symbolic_build")
    reduce_source = _compact_source(reduce)
    if reduce_source is None or 'strategy.reduce("MEAN",v,axis=0)' in reduce_source:
        broken.append("reduce_per_replica")
    return broken


def _local_share(value, strategy):
    """One local replica's part of a distributed value (a plain value is returned as is)."""
    import tensorflow as tf

    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _wrap_symbolic_build(original):
    from keras.src import tree

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None:
            # The same first batch Keras would take, without the cross-replica reduce.
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = tree.map_structure(lambda v: _local_share(v, strategy), first)
                break
            iterator = None
        return original(self, iterator=iterator, data_batch=data_batch)

    _maybe_symbolic_build.__wrapped__ = original
    setattr(_maybe_symbolic_build, _PATCHED_MARK, True)
    return _maybe_symbolic_build


def _wrap_reduce_per_replica(original, is_multi_worker):
    from keras.src import tree

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
            return original(values, strategy, reduction)

        def reduce_one(value):
            if _local_share(value, strategy).shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)  # 0-d: mean over replicas
            return original(value, strategy, reduction)

        return tree.map_structure(reduce_one, values)

    reduce_per_replica.__wrapped__ = original
    setattr(reduce_per_replica, _PATCHED_MARK, True)
    return reduce_per_replica


def patch_distributed_fit() -> list[str]:
    """Applies the work-around where the installed Keras needs it; idempotent.

    Returns:
        The places patched by this call (empty when Keras is fixed or already patched).
    """
    from keras.src.backend.tensorflow import trainer as trainer_module

    def is_multi_worker(strategy) -> bool:
        # The predicate Keras itself uses to pick the cross-worker reduction.
        return trainer_module._collective_all_reduce_multi_worker(strategy)

    patched = []
    broken = broken_places(trainer_module)
    build = trainer_module.TensorFlowTrainer._maybe_symbolic_build
    if "symbolic_build" in broken and not getattr(build, _PATCHED_MARK, False):
        trainer_module.TensorFlowTrainer._maybe_symbolic_build = _wrap_symbolic_build(build)
        patched.append("symbolic_build")
    reduce = trainer_module.reduce_per_replica
    if "reduce_per_replica" in broken and not getattr(reduce, _PATCHED_MARK, False):
        # Looked up as a module global when the train function is traced: replacing the
        # module attribute is enough.
        trainer_module.reduce_per_replica = _wrap_reduce_per_replica(reduce, is_multi_worker)
        patched.append("reduce_per_replica")
    return patched
