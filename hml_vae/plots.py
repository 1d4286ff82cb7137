"""Figures of a run and its one-page ``report.md``.

Every figure is a small function ``(context) -> Figure`` registered by name in
``FIGURES``; a family lists the names it draws (``Family.figures``). :func:`make_figures`
draws them and records, for each that fails, why — the report lists them instead of the
run crashing. Figures are made with matplotlib's object-oriented API (``Figure`` objects
saved to PNG), so importing this module never changes matplotlib's backend or opens a
window, in a script or a notebook. Images are (N, H, W, C): grayscale shown in gray,
colour in colour.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib.ticker
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from hml_vae.config import Config

FIGURE_DPI = 100
TSNE_POINTS = 2_000  # t-SNE of more points costs minutes on a laptop CPU and adds little


@dataclasses.dataclass
class PlotContext:
    """What figures are drawn from: the config, the models, test data and the history."""

    config: Config
    models: object  # a bundle with encode / decode / reconstruct
    images: np.ndarray  # (N, H, W, C) test images in [0, 1]
    labels: np.ndarray | None  # None: the data set has no labels
    class_names: tuple[str, ...] | None
    history: dict
    seed: int = 0


def new_figure(rows: int = 1, columns: int = 1, figsize=(6.4, 4.8)):
    """A figure and its grid of axes (always 2-D), not attached to any pyplot state."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(rows, columns, squeeze=False)


def show_image(axes, image, **kwargs) -> None:
    """One image (H, W, C) in [0, 1]: grayscale as dark on light, colour as it is."""
    image = np.clip(np.asarray(image), 0, 1)
    if image.ndim == 3 and image.shape[-1] == 3:
        axes.imshow(image, interpolation="nearest", **kwargs)
    else:
        axes.imshow(image.reshape(image.shape[:2]), cmap="binary", vmin=0, vmax=1,
                    interpolation="nearest", **kwargs)


def show_images(axes_row, images, titles=None) -> None:
    """A row of images without interpolation blur, axes hidden."""
    for index, axes in enumerate(axes_row):
        show_image(axes, images[index])
        axes.set_xticks([])
        axes.set_yticks([])
        if titles is not None:
            axes.set_title(titles[index], fontsize=8)


def image_grid(rows: list[tuple[str, np.ndarray]], titles=None, title: str = ""):
    """A figure of labelled rows of images, e.g. originals above reconstructions."""
    columns = len(rows[0][1])
    figure, axes = new_figure(len(rows), columns,
                              figsize=(1.1 * columns + 1.0, 1.25 * len(rows) + 0.6))
    for row, (name, images) in enumerate(rows):
        show_images(axes[row], images, titles if row == 0 else None)
        axes[row][0].set_ylabel(name, fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def class_name(context: PlotContext, index: int) -> str:
    """The class of test image ``index``, or its number when the data set has no labels."""
    if context.labels is None or not context.class_names:
        return f"#{index}"
    return context.class_names[context.labels[index]]


def titles_of(context: PlotContext, count: int) -> list[str]:
    return [class_name(context, index) for index in range(min(count, len(context.images)))]


def reconstructions(context: PlotContext, count: int = 10):
    images = context.images[:count]
    rebuilt = np.clip(np.asarray(context.models.reconstruct(images)).reshape(images.shape), 0, 1)
    names = titles_of(context, count)
    return image_grid([("original", images), ("reconstructed", rebuilt)], names,
                      f"{context.config.model}: test images and their reconstructions")


def two_dimensional(codings: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """The codings themselves when 2-D, else their t-SNE embedding."""
    if codings.shape[1] == 2:
        return codings, "coding"
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (len(codings) - 1) / 3))
    embedded = TSNE(n_components=2, init="pca", perplexity=perplexity,
                    random_state=seed).fit_transform(codings)
    return embedded, "t-SNE"


def latent_map(context: PlotContext):
    images = context.images[:TSNE_POINTS]
    codings = context.models.coding(images)
    points, method = two_dimensional(codings, context.seed)
    figure, axes = new_figure(figsize=(8, 6.5))
    axes = axes[0][0]
    if context.labels is None or not context.class_names:
        axes.scatter(points[:, 0], points[:, 1], s=6, alpha=0.8, label="unlabelled")
    else:
        labels = context.labels[:TSNE_POINTS]
        colours = colormaps["tab10" if len(context.class_names) <= 10 else "tab20"]
        for label, name in enumerate(context.class_names):
            chosen = labels == label
            if chosen.any():
                axes.scatter(points[chosen, 0], points[chosen, 1], s=6,
                             color=colours(label % colours.N), label=name, alpha=0.8)
    axes.set_xlabel(f"{method} 1")
    axes.set_ylabel(f"{method} 2")
    dimension = codings.shape[1]
    axes.set_title(f"{context.config.model}: {len(images)} test codings "
                   f"({dimension}-D{', t-SNE' if dimension != 2 else ''})")
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, fontsize=9)
    figure.tight_layout()
    return figure


def interpolation(context: PlotContext, steps: int = 9):
    first = 0
    if context.labels is None:  # no classes: the first and the last test image
        second = len(context.images) - 1
    else:
        second = int(np.argmax(context.labels != context.labels[first]))
        if context.labels[second] == context.labels[first]:
            raise ValueError("the test images are all of one class; need two classes to "
                             "interpolate between")
    pair = context.images[[first, second]]
    codings = context.models.coding(pair)
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    path = (1 - weights) * codings[0] + weights * codings[1]
    decoded = np.clip(np.asarray(context.models.decode(path.astype(np.float32))), 0, 1)
    titles = [f"{weight:.2f}" for weight in weights[:, 0]]
    names = [class_name(context, index) for index in (first, second)]
    return image_grid([("decoded", decoded)], titles,
                      f"{context.config.model}: decoded points on the line from a test "
                      f"{names[0]} to a test {names[1]} in coding space")


def curve_groups(history: dict) -> list[tuple[str, list[str]]]:
    """Panels of the training curves: the loss, then any other metric with its val_ twin."""
    names = [key for key in history if not key.startswith("val_")
             and key not in ("epoch", "epoch_seconds")
             and (key.endswith("loss") or len(set(history[key])) > 1)]  # constant β: no news
    names.sort(key=lambda key: key != "loss")
    return [(name, [key for key in (name, f"val_{name}") if key in history]) for name in names]


def training_curves(context: PlotContext):
    groups = curve_groups(context.history)
    if not groups:
        raise ValueError("the history has no losses")
    figure, axes = new_figure(1, len(groups), figsize=(4.2 * len(groups), 3.6))
    for panel, (name, keys) in zip(axes[0], groups, strict=True):
        for key in keys:
            values = context.history[key]
            epochs = context.history.get("epoch", [])
            if len(epochs) != len(values):  # e.g. a greedy run's levels: epochs of their own
                epochs = range(1, len(values) + 1)
            panel.plot(epochs, values, marker="o", markersize=3,
                       label="validation" if key.startswith("val_") else "training")
        panel.set_xlabel("epoch")
        panel.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        panel.set_ylabel(name)
        panel.set_title(name.replace("_", " "))
        panel.grid(alpha=0.3)
        panel.legend(fontsize=8)
    figure.suptitle(f"{context.config.model}: training curves")
    figure.tight_layout()
    return figure


def samples(context: PlotContext, rows: int = 3, columns: int = 10):
    images = context.models.generate(rows * columns, seed=context.seed)
    figure, axes = new_figure(rows, columns, figsize=(1.1 * columns, 1.1 * rows + 0.5))
    for row in range(rows):
        show_images(axes[row], images[row * columns:(row + 1) * columns])
    kind = "pixel probabilities" if context.config.likelihood == "bernoulli" else "means"
    figure.suptitle(f"{context.config.model}: decoded draws z ~ N(0, I) (seed "
                    f"{context.seed}; {kind})")
    figure.tight_layout()
    return figure


def latent_grid(context: PlotContext, size: int = 12):
    """The decoder over a grid of the 2-D latent space at the prior's quantiles 5%..95%."""
    from statistics import NormalDist

    quantiles = [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, size)]
    grid = np.array([[x, y] for y in reversed(quantiles) for x in quantiles], np.float32)
    height, width, channels = context.images.shape[1:]
    images = context.models.decode(grid).reshape(size, size, height, width, channels)
    canvas = images.transpose(0, 2, 1, 3, 4).reshape(size * height, size * width, channels)
    figure, axes = new_figure(figsize=(7.5, 7.5))
    axes = axes[0][0]
    span = (quantiles[0], quantiles[-1])
    show_image(axes, canvas, extent=(span[0], span[1], span[0], span[1]))
    axes.set_xlabel("z₁ (prior quantiles 5%–95%)")
    axes.set_ylabel("z₂ (prior quantiles 5%–95%)")
    axes.set_title(f"{context.config.model}: the decoder over the 2-D latent space")
    figure.tight_layout()
    return figure


def denoising(context: PlotContext, count: int = 10):
    config = context.config
    clean = context.images[:count]
    noisy = config.family.corrupt(config, clean)
    denoised = np.asarray(context.models.reconstruct(noisy)).reshape(clean.shape)
    names = titles_of(context, count)
    what = (f"Gaussian noise σ={config.noise_stddev}" if config.noise == "gaussian"
            else f"dropout rate {config.dropout_rate}")
    return image_grid([("clean", clean), ("noisy", np.clip(noisy, 0, 1)),
                       ("denoised", np.clip(denoised, 0, 1))], names,
                      f"{config.model}: test images corrupted with {what}, then denoised")


def sparsity(context: PlotContext):
    codings = context.models.coding(context.images)
    mean_activations = codings.mean(axis=0)  # per coding unit, over the test images
    figure, axes = new_figure(figsize=(7, 4))
    axes = axes[0][0]
    axes.hist(mean_activations, bins=40, range=(0, 1), color="tab:blue")
    if context.config.sparsity == "kl":
        axes.axvline(context.config.sparsity_target, color="tab:red", linestyle="--",
                     label=f"target {context.config.sparsity_target}")
        axes.legend()
    axes.set_xlabel("mean activation of a coding unit over the test images")
    axes.set_ylabel("coding units")
    axes.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_title(f"{context.config.model} ({context.config.sparsity} penalty): "
                   f"{codings.shape[1]} units, overall mean {codings.mean():.3f}")
    figure.tight_layout()
    return figure


def hash_buckets(context: PlotContext, buckets: int = 10, per_bucket: int = 8):
    """The most common hashes of the test images, one row each: the row's images all
    share the hash written beside it (as bits) with the bucket's size."""
    from hml_vae.families.hashing import bit_string, image_hashes, most_common_hashes

    hashes = image_hashes(context.models, context.images)
    bits = context.config.latent_dim
    top = most_common_hashes(hashes, buckets)
    figure, axes = new_figure(len(top), per_bucket,
                              figsize=(1.0 * per_bucket + 2.2, 1.05 * len(top) + 0.8))
    for row, (image_hash, size) in enumerate(top):
        members = context.images[hashes == image_hash][:per_bucket]
        for column, cell in enumerate(axes[row]):
            cell.set_xticks([])
            cell.set_yticks([])
            if column < len(members):
                show_image(cell, members[column])
            else:
                cell.set_axis_off()  # a bucket smaller than the row
        axes[row][0].set_ylabel(f"{bit_string(image_hash, bits)}\n{size} images", fontsize=7,
                                rotation=0, ha="right", va="center")
    figure.suptitle(f"{context.config.model}: the {len(top)} most common of "
                    f"{len(np.unique(hashes))} hashes of {len(hashes)} test images")
    figure.tight_layout()
    return figure


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A figure: its drawing function and, when it needs more than the family's say-so,
    what else the run must have (a 2-D latent space, ...)."""

    draw: Callable[[PlotContext], object]
    applies: Callable[[Config], bool] = lambda config: True


# Every figure a family may list in ``Family.figures``, drawn into figures/<name>.png.
FIGURES = {
    "reconstructions": FigureSpec(reconstructions),
    "denoising": FigureSpec(denoising),
    "latent_map": FigureSpec(latent_map),
    "samples": FigureSpec(samples),
    "interpolation": FigureSpec(interpolation),
    "latent_grid": FigureSpec(latent_grid, lambda config: config.latent_dim == 2),
    "training_curves": FigureSpec(training_curves),
    "sparsity": FigureSpec(sparsity),
    "hash_buckets": FigureSpec(hash_buckets),
}


def make_figures(context: PlotContext, directory: Path) -> dict[str, str]:
    """Draws every figure of the run's family into ``directory``.

    Returns:
        {filename: why it could not be made} for the figures that failed (empty when all
        were made).
    """
    directory.mkdir(parents=True, exist_ok=True)
    failures = {}
    for name in context.config.family.figures:
        spec = FIGURES[name]
        if not spec.applies(context.config):
            continue
        try:
            spec.draw(context).savefig(directory / f"{name}.png", dpi=FIGURE_DPI)
        except Exception as error:  # one broken figure must not cost the others
            failures[f"{name}.png"] = f"{type(error).__name__}: {error}"
    return failures


# --- The report -------------------------------------------------------------------------


def metric_unit(name: str) -> str:
    if name.endswith("_mse_per_pixel"):
        return "mean squared error per pixel"
    if name.endswith("_seconds"):
        return "s"
    if name.endswith(("_elbo", "_nll", "_kl", "_gap")) or "_nll_" in name:
        return "nats/image"
    return ""


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def write_report(run_dir: Path, config: Config, metrics: dict,
                 failures: dict[str, str]) -> Path:
    """``report.md``: config, metrics with units, and the figures that exist."""
    source = config.images or config.npz or config.dataset
    shape = "×".join(map(str, config.image_shape)) if config.image_shape else "?"
    lines = [f"# Run `{run_dir.name}`: {config.model} on {source} ({shape} images)", "",
             f"Architecture: {config.family.describe(config)}.", ""]
    lines += ["## Metrics", "", "| metric | value | unit |", "|---|---|---|"]
    lines += [f"| {name} | {format_value(value)} | {metric_unit(name)} |"
              for name, value in sorted(metrics.items())]
    lines += ["", "## Figures", ""]
    if not config.make_plots:
        lines += ["Not drawn (trained with `--no-plots`); `scripts/plot.py` draws them.", ""]
    for path in sorted((run_dir / "figures").glob("*.png")):
        title = path.stem.replace("_", " ").capitalize()
        lines += [f"### {title}", "", f"![{title}](figures/{path.name})", ""]
    if failures:
        lines += ["### Figures that could not be made", ""]
        lines += [f"- `{name}`: {why}" for name, why in sorted(failures.items())]
        lines.append("")
    lines += ["## Config", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {format_value(value)} |"
              for name, value in sorted(dataclasses.asdict(config).items())]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_run(run_dir: Path, config: Config, models, data, history: dict,
             metrics: dict) -> dict[str, str]:
    """Draws the figures of a run into ``run_dir/figures`` (unless the config says
    ``make_plots=False``) and writes ``report.md``.

    Returns:
        The figures that could not be made, with the reason.
    """
    failures = {}
    if config.make_plots:
        # The test images the metrics were computed on (a streamed split: its first ones).
        from hml_vae.evaluation import MAX_EVALUATION_IMAGES

        images, labels = data.test.head(min(len(data.test), MAX_EVALUATION_IMAGES))
        context = PlotContext(config=config, models=models, images=images, labels=labels,
                              class_names=data.class_names, history=history, seed=config.seed)
        failures = make_figures(context, Path(run_dir) / "figures")
    write_report(Path(run_dir), config, metrics, failures)
    return failures


# --- Semi-supervised classification -----------------------------------------------------


def accuracy_vs_labels(summary: list[dict], num_classes: int = 10, title: str = ""):
    """Test accuracy against the label budget: one line per method, error bars = std over
    seeds, budgets on a log axis (methods slightly apart), chance (1 / num_classes) dashed
    when the accuracy axis reaches down to it.

    Args:
        summary: rows with ``budget``, ``method``, ``mean``, ``std`` (accuracies in [0, 1]),
            as :func:`hml_vae.semi_supervised.summarize` returns them.

    Returns:
        The matplotlib Figure.
    """
    figure, axes = new_figure(figsize=(6.4, 4.4))
    axes = axes[0][0]
    methods = list(dict.fromkeys(row["method"] for row in summary))
    for index, method in enumerate(methods):
        rows = sorted((row for row in summary if row["method"] == method),
                      key=lambda row: row["budget"])
        # Methods side by side around each budget, so that error bars do not overlap.
        dodge = 1.04 ** (index - (len(methods) - 1) / 2)
        axes.errorbar([row["budget"] * dodge for row in rows],
                      [100 * row["mean"] for row in rows],
                      yerr=[100 * row["std"] for row in rows], marker="o", capsize=3,
                      label=method.replace("_", " "))
    budgets = sorted({row["budget"] for row in summary})
    axes.set_xscale("log")
    axes.set_xticks(budgets)
    axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if len(budgets) == 1:  # a log axis around one point needs explicit limits
        axes.set_xlim(budgets[0] / 2, budgets[0] * 2)
    axes.set_xlabel("labeled examples (log scale)")
    # The accuracy axis fits the data (differences of a point or two must stay visible);
    # chance is drawn when it is in view and named in the label in any case.
    chance = 100 / num_classes
    low, high = axes.get_ylim()
    if low <= chance <= high:
        axes.axhline(chance, color="gray", linestyle="--", linewidth=1, label="chance")
    axes.set_ylabel(f"test accuracy (%; chance {chance:.0f}%)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8, loc="best", title="mean ± std over seeds", title_fontsize=8)
    axes.set_title(title or "Accuracy against the number of labels")
    figure.tight_layout()
    return figure
