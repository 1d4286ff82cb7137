"""benchmarks/conv_levers.py: its speed-ups are the default's time over a variant's, and
its layer profile times the conv family's own layers."""

from __future__ import annotations

import keras
import pytest

from benchmarks import conv_levers
from hml_vae.families.conv import build_conv


def run(epoch_seconds, cpu_seconds, images=100):
    return {"epoch_seconds": epoch_seconds, "cpu_seconds": cpu_seconds,
            "images_per_epoch": images}


def test_speedups_are_the_defaults_time_over_the_variants_round_by_round():
    runs = {"default": [run([10.0, 2.0, 3.0], 20.0), run([12.0, 4.0, 4.0], 30.0)],
            "fast": [run([4.0, 1.0, 1.0], 10.0), run([12.0, 4.0, 4.0], 60.0)]}
    summary = conv_levers.summarize_training(runs)["fast"]
    assert summary["speedup_steady"] == pytest.approx([2.5, 1.0])
    # A 10-epoch run: the first epoch + 9 steady ones (10 + 9·2.5 over 4 + 9·1).
    assert summary["speedup_book_run"] == pytest.approx([32.5 / 13, 1.0])
    assert summary["speedup_cpu"] == pytest.approx([2.0, 0.5])
    assert summary["median_speedup_steady"] == pytest.approx(1.75)
    assert summary["first_epoch_seconds"] == [4.0, 12.0]


def weighted_layers(model):
    """(class name, input shape, kernel shape, output shape) of each layer with weights,
    the nested encoder's and decoder's in order."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            rows += weighted_layers(layer)
        elif layer.weights:
            rows.append((type(layer).__name__, tuple(layer.input.shape[1:]),
                         tuple(layer.kernel.shape), tuple(layer.output.shape[1:])))
    return rows


def test_the_layer_profile_times_the_layers_of_the_books_conv_autoencoder():
    model = build_conv((28, 28, 1)).whole
    profiled = []
    for _, shape, make_layer, _ in conv_levers.layer_specs():
        layer = make_layer()
        output = layer.compute_output_shape((conv_levers.BATCH, *shape))
        layer.build((conv_levers.BATCH, *shape))
        if layer.weights:
            profiled.append((type(layer).__name__, shape, tuple(layer.kernel.shape),
                             tuple(output[1:])))
    assert profiled == weighted_layers(model)


def test_the_op_profile_table_lists_the_costliest_first_with_their_share():
    profile = {"steps": 10, "by_type": {"Relu": 25.0, "_MklNativeConv2DBackpropInput": 75.0},
               "by_layer": {"coding": 10.0, "encoder_conv_0 (backward)": 90.0}}
    lines = conv_levers.op_profile_table(profile)
    assert "100 µs of op time per training step" in lines[0]
    rows = [line for line in lines if line.startswith("| ") and "µs per step" not in line]
    assert rows == ["| _MklNativeConv2DBackpropInput | 75 | 75.0% |", "| Relu | 25 | 25.0% |",
                    "| encoder_conv_0 (backward) | 90 | 90.0% |", "| coding | 10 | 10.0% |"]
