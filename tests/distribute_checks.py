"""One training step of every model family on one device and on two mirrored CPU replicas,
and of two families on three replicas, which split the batch of 64 unevenly.

Run as a script (a fresh process: the CPU must be split before TensorFlow starts, which the
pytest process has long done); prints one JSON object: model -> {strategy -> numbers}.

    python tests/distribute_checks.py [MODEL ...]

For each strategy the same seed builds the same initial weights and the same global batch
of 64 images trains for one step. ``loss`` is what ``fit`` reports for that step (the loss
before the update), ``loss_after`` the loss of the updated model on the same batch: equal
values under both strategies mean the loss is scaled right across replicas and the
gradients are combined right. Under ``uneven`` (3 replicas: 22, 22 and 20 images) the
reported loss is still the mean over the 64 images, but the gradient is the mean of the
replicas' means, which weighs an image of the smaller share a little more."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hml_vae import distribute, families  # noqa: E402

# Greedy trains stacked levels, one after the other: its step is the stacked one.
FAMILIES = tuple(name for name in families.names() if families.get(name).train is None)
BATCH = 64


def one_step(model_name: str, strategy, images) -> dict:
    import keras

    from hml_vae.config import make_config
    from hml_vae.data import make_pipeline
    from hml_vae.training import build_and_compile

    # No XLA on either side (a strategy turns it off): what is compared is the loss and
    # the update, and compiling would only cost time.
    config = make_config(model_name, "tiny", batch_size=BATCH, binarize="none", seed=3,
                         image_shape=images.shape[1:], jit_compile=False)
    keras.utils.set_random_seed(config.seed)
    models = build_and_compile(config, strategy)
    if models.variational:
        # z = μ: the KL term is still added, and one device and two replicas see the same
        # z (with sampling they would draw different ε for the same image).
        models.sampling.deterministic = True
    batch = make_pipeline(images, BATCH).with_options(distribute.distribute_options())
    # Two epochs of the one batch: the second reports the loss after the first update
    # (with the train function already traced, which is cheaper than evaluate()).
    losses = models.whole.fit(batch, epochs=2, verbose=0, shuffle=False).history["loss"]
    return {"loss": losses[0], "loss_after": losses[1],
            "replicas": strategy.num_replicas_in_sync}


def replica_noise_differs(strategy) -> bool:
    """Whether two replicas draw different ε for the images at the same place in their
    share of the batch (the same ε would make their gradient noise correlated)."""
    import keras
    import numpy as np

    from hml_vae.layers import Sampling

    with strategy.scope():
        inputs = keras.Input((3,))
        model = keras.Model(inputs, Sampling(seed=1)([inputs, inputs]))
    noise = model.predict(np.zeros((4, 3), np.float32), batch_size=4, verbose=0)
    return bool(np.abs(noise[:2] - noise[2:]).max() > 1e-3)  # replica 0: rows 0-1


# Families whose step is also run on three replicas (a batch of 64 does not split evenly).
UNEVEN_FAMILIES = ("stacked", "vae")


def main(names) -> None:
    distribute.configure_cpu_replicas(3)
    import tensorflow as tf

    from hml_vae import compat
    from hml_vae.data import load_dataset

    compat.patch_distributed_fit()
    images = load_dataset(limit=BATCH).train.images[:BATCH]
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    strategies = {"default": tf.distribute.get_strategy(),
                  "mirrored": tf.distribute.MirroredStrategy(devices[:2]),
                  # Its own reduction: two strategies' collective groups on the same
                  # devices would clash ("joining a group with size 3, but that group has
                  # size 2").
                  "uneven": tf.distribute.MirroredStrategy(
                      devices, cross_device_ops=tf.distribute.ReductionToOneDevice())}
    results = {name: {strategy_name: one_step(name, strategy, images)
                      for strategy_name, strategy in strategies.items()
                      if strategy_name != "uneven" or name in UNEVEN_FAMILIES}
               for name in names}
    results["_replica_noise_differs"] = replica_noise_differs(strategies["mirrored"])
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:] or FAMILIES)
