"""hml_vae.plots and scripts/plot.py: the figures and report of a run, and bad run
directories."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from conftest import call_script, run_script
from matplotlib import colormaps
from PIL import Image
from scipy import ndimage

from hml_vae import plots, training
from hml_vae.config import make_config

AUTOENCODER_FIGURES = {"reconstructions.png", "latent_map.png", "interpolation.png",
                       "training_curves.png"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("plots") / "run"
    training.train_and_evaluate(make_config("stacked", "tiny", limit=600, epochs=2), run_dir)
    return run_dir


def figures_in(run_dir):
    return {path.name for path in (run_dir / "figures").glob("*.png")}


def referenced_figures(report: str) -> set[str]:
    return set(re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", report))


def test_every_figure_is_a_png_of_screen_size(finished_run):
    assert figures_in(finished_run) == AUTOENCODER_FIGURES
    for name in AUTOENCODER_FIGURES:
        with Image.open(finished_run / "figures" / name) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 300 <= width <= 1600 and 150 <= height <= 1000, (name, image.size)


def gray_pixels(path) -> np.ndarray:
    """The PNG as gray levels 0 (black) to 255 (white), transparency on white."""
    with Image.open(path) as image:
        return np.asarray(Image.alpha_composite(
            Image.new("RGBA", image.size, "white"), image.convert("RGBA")).convert("L"),
            dtype=float)


def panel_frames(gray: np.ndarray) -> list[tuple[slice, slice]]:
    """Bounding boxes of the drawn axes: dark connected shapes that outline a rectangle
    (matplotlib's black spines), larger than a glyph of text."""
    shapes, _ = ndimage.label(gray < 80, structure=np.ones((3, 3)))
    frames = []
    for index, box in enumerate(ndimage.find_objects(shapes), start=1):
        rows, columns = box
        if rows.stop - rows.start < 15 or columns.stop - columns.start < 15:
            continue
        outline = shapes[box] == index
        # Spines all round: two full rows and two full columns (tick marks stick out of
        # them), and hollow inside; a garment is solid, a curve is not dark.
        full_rows = (outline.mean(axis=1) > 0.85).sum()
        full_columns = (outline.mean(axis=0) > 0.85).sum()
        if full_rows >= 2 and full_columns >= 2 and outline[8:-8, 8:-8].mean() < 0.5:
            frames.append(box)
    return sorted(frames, key=lambda box: (box[0].start // 10, box[1].start))


def inside(gray: np.ndarray, box, margin: int = 2) -> np.ndarray:
    rows, columns = box
    return gray[rows.start + margin: rows.stop - margin, columns.start + margin:
                columns.stop - margin]


def test_image_figures_show_one_filled_panel_per_image(finished_run):
    figures = finished_run / "figures"
    for name, expected in (("reconstructions.png", 2 * 10), ("interpolation.png", 9)):
        gray = gray_pixels(figures / name)
        frames = panel_frames(gray)
        assert len(frames) == expected, (name, len(frames))
        for box in frames:  # every panel drawn: not a blank (white) square
            assert (inside(gray, box) < 250).mean() > 0.02, (name, box)


def test_curves_and_latent_map_have_their_panels_and_data(finished_run):
    figures = finished_run / "figures"
    history = json.loads((finished_run / "history.json").read_text())
    gray = gray_pixels(figures / "training_curves.png")
    frames = panel_frames(gray)
    assert len(frames) == len(plots.curve_groups(history)) >= 1
    with Image.open(figures / "training_curves.png") as image:
        rgb = np.asarray(image.convert("RGB"), dtype=int)
    training_colour = np.array(colormaps["tab10"](0)[:3]) * 255  # the first line's colour
    for rows, columns in frames:
        panel = rgb[rows, columns]
        assert (np.abs(panel - training_colour).sum(axis=-1) < 40).sum() > 20  # a curve

    with Image.open(figures / "latent_map.png") as image:
        rgb = np.asarray(image.convert("RGB"), dtype=int)
    assert len(panel_frames(gray_pixels(figures / "latent_map.png"))) == 1
    from hml_vae.data import load_dataset

    labels = load_dataset(limit=600).test.labels[:plots.TSNE_POINTS]
    # One colour per class among the points (alpha 0.8 over white), legend included.
    drawn = [index for index in range(10) if (np.abs(
        rgb - (0.8 * np.array(colormaps["tab10"](index)[:3]) * 255 + 51)).sum(axis=-1)
        < 30).sum() > 10]
    assert drawn == sorted(set(labels.tolist())), drawn


def test_report_shows_metrics_with_units_and_exactly_the_figures(finished_run):
    report = (finished_run / "report.md").read_text()
    assert referenced_figures(report) == figures_in(finished_run)
    assert re.search(r"\| test_mse_per_pixel \| [0-9.e-]+ \| mean squared error per pixel \|",
                     report)
    assert "| latent_dim | 8 |" in report


def test_a_figure_that_fails_is_named_in_the_report(finished_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    shutil.rmtree(run_dir / "figures")

    def broken(context):
        raise ValueError("no codings today")

    monkeypatch.setattr(plots, "FIGURES", {**plots.FIGURES,
                                           "latent_map": plots.FigureSpec(broken)})
    from hml_vae.data import load_dataset
    from hml_vae.runs import load_run

    run = load_run(run_dir)
    failures = plots.plot_run(run_dir, run.config, run.load_models(),
                              load_dataset(limit=600), run.history, run.metrics)
    assert failures == {"latent_map.png": "ValueError: no codings today"}
    report = (run_dir / "report.md").read_text()
    assert "`latent_map.png`: ValueError: no codings today" in report
    drawn = {f"{name}.png" for name in run.config.family.figures} - {"latent_map.png"}
    assert referenced_figures(report) == drawn == figures_in(run_dir)


@pytest.mark.slow
def test_plot_script_redraws_a_saved_run(finished_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    shutil.rmtree(run_dir / "figures")
    (run_dir / "report.md").unlink()
    result = run_script("plot.py", run_dir)
    assert result.returncode == 0, result.stderr
    assert figures_in(run_dir) == AUTOENCODER_FIGURES
    assert referenced_figures((run_dir / "report.md").read_text()) == AUTOENCODER_FIGURES


def test_plot_script_errors_for_runs_that_are_not_finished(finished_run, tmp_path):
    interrupted = tmp_path / "interrupted"
    (tmp_path / "interrupted.incomplete").mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(finished_run, broken)
    (broken / "model.keras").unlink()
    cases = {
        tmp_path / "nowhere": "does not exist",
        interrupted: "has not finished: its training stopped",
        broken: "is incomplete: missing model.keras",
        tmp_path: "no config.json",
    }
    for run_dir, message in cases.items():
        result = call_script("plot.py", run_dir)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert message in result.stderr, result.stderr


@pytest.mark.slow
def test_a_vae_with_a_2d_latent_space_draws_the_latent_grid(tmp_path):
    run_dir = tmp_path / "run"
    training.train_and_evaluate(make_config("vae", "tiny", limit=400, latent_dim=2), run_dir)
    assert figures_in(run_dir) == AUTOENCODER_FIGURES | {"samples.png", "latent_grid.png"}
    with Image.open(run_dir / "figures" / "latent_grid.png") as image:
        assert min(image.size) >= 500  # 12 x 12 decoded images must stay legible


@pytest.mark.slow
def test_a_greedy_run_draws_its_level_curves(tmp_path):
    run_dir = tmp_path / "run"
    training.train_and_evaluate(make_config("greedy", "tiny", limit=400), run_dir)
    assert figures_in(run_dir) == AUTOENCODER_FIGURES
    history = json.loads((run_dir / "history.json").read_text())
    assert {"level_1_loss", "val_level_2_loss", "fine_tune_loss"} <= set(history)
    assert "could not be made" not in (run_dir / "report.md").read_text()


def test_no_plots_writes_a_report_that_says_so(tmp_path):
    run_dir = tmp_path / "run"
    training.train_and_evaluate(
        make_config("stacked", "tiny", limit=400, make_plots=False), run_dir)
    assert not (run_dir / "figures").exists()
    assert "--no-plots" in (run_dir / "report.md").read_text()
