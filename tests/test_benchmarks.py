"""benchmarks/: every benchmark still runs at a tiny size and writes stamped results that its
report and the README's tables read; the README's generated sections are the results'."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import REPO

from benchmarks import readme_tables, run_all, throughput
from benchmarks.machine import STAMP_KEYS


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """One `run_all.py --quick` for the whole module: (results dir, exit code)."""
    results_dir = tmp_path_factory.mktemp("bench-quick")
    return results_dir, run_all.main(["--quick", "--results-dir", str(results_dir)])


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=7", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
def test_every_benchmark_runs_quick_and_writes_a_stamped_report(quick_results):
    results_dir, code = quick_results
    written = {path.stem: json.loads(path.read_text()) for path in results_dir.glob("*.json")}
    for name in run_all.BENCHMARKS:
        stems = [stem for stem in written if stem.startswith(name)]
        assert len(stems) == 1, (name, sorted(written))  # a quick run names its reductions
        report = written[stems[0]]
        machine = report["machine"]
        assert set(STAMP_KEYS) <= set(machine), (name, sorted(machine))
        assert machine["commit"] == head_commit()
        assert len(machine["load_average_before"]) == len(machine["load_average_after"]) == 3
        # The report is made from the results file alone: the schema its reader needs.
        module = __import__(f"benchmarks.{name}", fromlist=["to_markdown"])
        markdown = (results_dir / f"{stems[0]}.md").read_text()
        assert markdown == module.to_markdown(report), name
        assert machine["commit"] in markdown
    assert code == 0
    assert not (REPO / "benchmarks" / "results" / "throughput_limit512.json").exists()


@pytest.mark.slow
def test_quick_results_fill_the_readme_tables(quick_results, tmp_path):
    results_dir, _ = quick_results
    # Under the stems the README reads (quick runs name their reductions).
    for path in results_dir.glob("*.json"):
        stem = next(name for name in run_all.BENCHMARKS if path.stem.startswith(name))
        (tmp_path / f"{stem}.json").write_text(path.read_text())
    readme = readme_tables.README.read_text()
    rendered = readme_tables.render(readme, tmp_path)
    generated = rendered.split("<!-- generated:performance -->")[1].split(
        "<!-- /generated:performance -->")[0]
    assert "no results file" not in generated and "stale" not in generated
    quick = json.loads((tmp_path / "throughput.json").read_text())
    speed = quick["summary"]["hml_vae"]["images_per_second"]
    assert f"**{speed:,.0f}**" in rendered


def test_readme_tables_are_the_committed_results():
    readme = readme_tables.README.read_text()
    names = {match["name"] for match in readme_tables.MARKERS.finditer(readme)}
    assert names == set(readme_tables.SECTIONS)
    assert readme_tables.render(readme) == readme, (
        "README.md's generated sections are out of date: python benchmarks/readme_tables.py")


def test_a_quick_run_never_writes_the_committed_results(capsys):
    assert run_all.main(["--quick", "--results-dir", str(run_all.RESULTS)]) == 2
    assert "never writes" in capsys.readouterr().err


def test_the_flop_count_is_the_matrix_multiplies_of_the_training_step():
    """Counts the MatMul ops of the dense VAE's loss and gradients as TensorFlow traces
    them (batch 128) and compares with throughput.flops_per_image."""
    import keras
    import tensorflow as tf

    from hml_vae.config import make_config
    from hml_vae.families import build

    config = make_config("vae", hidden=(throughput.HIDDEN,), latent_dim=throughput.LATENT,
                         binarize="none").for_images((28, 28, 1))
    model = build(config).whole
    images = tf.constant(np.zeros((throughput.BATCH, 28, 28, 1), np.float32))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            model(x, training=True)
            loss = keras.ops.sum(model.losses)
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(images).graph
    flops = 0
    for operation in graph.get_operations():
        if operation.type in ("MatMul", "BatchMatMulV2"):
            a, b = (tensor.shape.as_list() for tensor in operation.inputs)
            if operation.get_attr("transpose_a" if operation.type == "MatMul" else "adj_x"):
                a = a[::-1]
            if operation.get_attr("transpose_b" if operation.type == "MatMul" else "adj_y"):
                b = b[::-1]
            flops += 2 * a[0] * a[1] * b[1]
    assert flops == throughput.BATCH * throughput.flops_per_image() == 128 * 3_280_000
