"""TensorBoard event files read back with TensorBoard's own reader (EventAccumulator), for
the tests of every kind of run that logs: scalars and images per tag and step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def accumulator(directory: Path) -> EventAccumulator:
    """Every event of one TensorBoard run (a directory), duplicates kept: TensorBoard's
    reader would otherwise drop a repeated step itself and hide it from the test."""
    events = EventAccumulator(str(directory), size_guidance={"tensors": 0},
                              purge_orphaned_data=False)
    events.Reload()
    return events


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} as written (tf.summary writes scalars as tensors)."""
    events = accumulator(directory)
    return {tag: [(event.step, float(tf.make_ndarray(event.tensor_proto)))
                  for event in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]}


def images(directory: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """{tag: [(step, float image (H, W, C) in [0, 1]), ...]}."""
    events = accumulator(directory)
    found = {}
    for tag in events.Tags()["tensors"]:
        for event in events.Tensors(tag):
            width, height, png = tf.make_ndarray(event.tensor_proto)  # the image plugin's
            picture = tf.io.decode_png(png).numpy() / 255
            assert picture.shape[:2] == (int(height), int(width))
            found.setdefault(tag, []).append((event.step, picture))
    return found


def steps(logged: dict) -> dict[str, list[int]]:
    """{tag: [step, ...]} in the order logged."""
    return {tag: [step for step, _ in values] for tag, values in logged.items()}


def values(logged: dict, tag: str) -> list[float]:
    return [value for _, value in logged[tag]]
