"""hml_vae's notebook API (hml_vae.train / load_run / evaluate / plot) and what importing
the package does: registers the custom layers, leaves matplotlib's backend alone."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import hml_vae
from hml_vae.data import load_dataset


def test_train_returns_the_finished_run_and_load_run_reads_it_back(tmp_path):
    run = hml_vae.train("vae", preset="tiny", output=tmp_path / "run", limit=300, epochs=2)
    assert run.config.model == "vae" and run.config.image_shape == (28, 28, 1)
    assert run.history["epoch"] == [1, 2] and len(run.history["kl"]) == 2
    assert run.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"reconstructions", "samples", "training_curves"} <= set(run.figures)
    assert run.report.exists()
    images = load_dataset(limit=300).test.images[:5]
    again = hml_vae.load_run(tmp_path / "run")
    np.testing.assert_allclose(again.models.reconstruct(images), run.models.reconstruct(images),
                               atol=1e-6)
    assert again.models.generate(3, seed=1).shape == (3, 28, 28, 1)

    # A saved config runs again with overrides.
    rerun = hml_vae.train(config=tmp_path / "run" / "config.json", output=tmp_path / "again",
                          epochs=1, make_plots=False)
    assert rerun.config.epochs == 1 and rerun.config.hidden == run.config.hidden
    assert rerun.figures == {}


def test_importing_hml_vae_registers_layers_and_keeps_the_matplotlib_backend():
    # A fresh process: this one shares matplotlib's state with the other tests.
    code = (
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "import hml_vae, hml_vae.plots, keras\n"
        "from hml_vae.layers import DenseTranspose, Sampling\n"
        "figure, axes = hml_vae.plots.new_figure()\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "objects = keras.saving.get_custom_objects()\n"
        "assert 'hml_vae>Sampling' in objects and 'hml_vae>DenseTranspose' in objects\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
