"""Speed of the importance-weighted −log p(x) estimate: hml_vae's vectorised, chunked
evaluation against a per-image Python loop.

    .venv/bin/python benchmarks/evaluation_speed.py            # K = 1000, 10,000 test images
    .venv/bin/python benchmarks/evaluation_speed.py --images 500 --samples 100   # smoke

Trains the dense VAE 784-400-20 (Bernoulli decoder, dynamically binarized images) for
``--epochs`` epochs (the speed does not depend on how well it is trained), then times
``hml_vae.evaluation.likelihood_terms`` on the statically binarized test images with K
samples, and the same estimate computed image by image (one encoder call and one decoder
call of K codings per image) on ``--loop-images`` images, extrapolated to all of them.
The loop is timed in ``--loop-slices`` slices, some before and some after the vectorised
run, and its median time per image is used: on a shared machine both then see the same
load. Writes STEM.json and STEM.md to --results-dir (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe_machine, finished, stamp_line  # noqa: E402
from benchmarks.throughput import PEAK_MODES, RESULTS, matmul_peak  # noqa: E402
from hml_vae import cli  # noqa: E402


def per_image_loop(models, images, samples: int, seed: int) -> np.ndarray:
    """−log p(x) image by image: what a straightforward implementation does."""
    from hml_vae import losses
    from hml_vae.evaluation import log_mean_exp

    rng = np.random.default_rng(seed)
    estimates = []
    for image in images:
        z_mean, z_log_var = models.posterior(image[None])
        epsilon = rng.standard_normal((samples, z_mean.shape[1])).astype(np.float32)
        z = z_mean + np.exp(0.5 * z_log_var) * epsilon  # (K, latent_dim)
        log_px_z = np.asarray(models.log_likelihood(np.repeat(image[None], samples, 0), z))
        log_weights = (log_px_z + np.asarray(losses.standard_normal_log_density(z))
                       - np.asarray(losses.gaussian_log_density(z, z_mean, z_log_var)))
        estimates.append(-log_mean_exp(log_weights.astype(np.float64)))
    return np.array(estimates)


def to_markdown(report: dict) -> str:
    """The report, from the results file alone."""
    loop = report["per_image_loop_seconds_extrapolated"]
    floor = report["decoder_seconds_at_matmul_peak"]
    same = report["same_images_nll_iwae"]
    lines = [
        "# Importance-weighted −log p(x): evaluation speed", "",
        stamp_line(report["machine"]), "",
        f"Dense VAE 784-400-20 trained {report['epochs']} epoch(s) on "
        f"{report['train_images']:,} images, K = {report['samples_k']}, "
        f"{report['images']:,} binarized test images.", "",
        "| implementation | seconds |", "|---|---|",
        f"| hml_vae (vectorised over samples, chunked, log-sum-exp) | "
        f"{report['vectorised_seconds']:.1f} |",
        f"| per-image Python loop ({report['loop_images_timed']} images timed in "
        f"{len(report['loop_seconds_per_image_by_slice'])} slices around it, median "
        f"extrapolated) | {loop:.1f} |", "",
        f"Speed-up: **{report['speed_up']:.1f}×**. −log p(x) ≈ {report['test_nll_iwae']:.2f} "
        f"nats/image. On the timed images both give {same['vectorised']:.2f} and "
        f"{same['loop']:.2f} nats (different draws).", "",
        f"Floor: the decoder's multiply-adds alone take {floor:.1f} s at this machine's "
        f"float32 matmul peak ({report['matmul_peak_gflops']:.0f} GFLOP/s, TensorFlow, best "
        f"over GEMM shapes; benchmarks/throughput.py), so no float32 implementation beats "
        f"{loop:.0f} s by more than {loop / floor:.1f}× here. Their ratio is measured in one "
        f"run, the loop in slices around the vectorised run.", "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="K")
    parser.add_argument("--images", type=int, default=10_000, help="test images to evaluate")
    parser.add_argument("--loop-images", type=int, default=50)
    parser.add_argument("--loop-slices", type=int, default=5,
                        help="the loop is timed in this many slices around the vectorised run")
    parser.add_argument("--epochs", type=cli.positive_int, default=1)
    parser.add_argument("--limit", type=cli.positive_int,
                        help="train on the first N images (smoke runs)")
    parser.add_argument("--peak-size", type=cli.positive_int, default=2048,
                        help="side of the square matrix multiply of the peak")
    parser.add_argument("--peak-modes", type=cli.name_list(PEAK_MODES, "peak modes"),
                        default=PEAK_MODES, help="matmuls of the peak in plain TF and/or XLA")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    machine = describe_machine()
    peak = matmul_peak(args.peak_size, modes=args.peak_modes)["peak_flops"]

    import keras

    from hml_vae.config import make_config
    from hml_vae.data import load_dataset
    from hml_vae.evaluation import likelihood_terms
    from hml_vae.training import build_and_compile, fit_arguments, make_training_data

    # Bernoulli decoder on dynamically binarized training images, one static
    # binarization of the test images (what the likelihood is measured on).
    config = make_config("vae", "bernoulli", hidden=(400,), latent_dim=20, optimizer="adam",
                         batch_size=128, epochs=args.epochs)
    data = load_dataset(config.dataset, binarize=config.binarize, seed=config.seed,
                        limit=args.limit)
    config = config.for_images(data.image_shape)
    keras.utils.set_random_seed(config.seed)
    models = build_and_compile(config)
    train, _ = make_training_data(config, data)  # as scripts/train.py trains
    models.whole.fit(**fit_arguments(models.whole, train), epochs=args.epochs, verbose=0,
                     shuffle=False)
    images = data.test.images[: args.images]

    loop_images = images[: args.loop_images]
    slices = np.array_split(np.arange(len(loop_images)), args.loop_slices)
    per_image_loop(models, loop_images[:2], args.samples, seed=0)  # warm up the graphs
    loop_seconds_per_image, looped = [], []

    def time_loop_slice(index):
        indices = slices[index]
        started = time.perf_counter()
        looped.append(per_image_loop(models, loop_images[indices], args.samples, seed=index))
        loop_seconds_per_image.append((time.perf_counter() - started) / len(indices))

    before = len(slices) // 2
    for index in range(before):
        time_loop_slice(index)
    started = time.perf_counter()
    terms = likelihood_terms(models, images, iwae_samples=args.samples, seed=0)
    vectorised_seconds = time.perf_counter() - started
    for index in range(before, len(slices)):
        time_loop_slice(index)
    looped = np.concatenate(looped)
    loop_seconds = statistics.median(loop_seconds_per_image) * len(images)
    vectorised_mean = float(np.mean(terms["nll_iwae"][: len(loop_images)]))
    decoder_flops = 2 * (20 * 400 + 400 * 784) * args.samples * len(images)

    report = {
        "machine": finished(machine),
        "samples_k": args.samples, "images": len(images), "epochs": args.epochs,
        "train_images": len(data.train.images),
        "matmul_peak_gflops": peak / 1e9,
        # The decoder's multiply-adds (20 -> 400 -> 784) alone at that peak: a floor for
        # any fp32 implementation, the loop included.
        "decoder_seconds_at_matmul_peak": decoder_flops / peak,
        "vectorised_seconds": vectorised_seconds,
        "per_image_loop_seconds_extrapolated": loop_seconds,
        "loop_images_timed": len(loop_images),
        "loop_seconds_per_image_by_slice": loop_seconds_per_image,
        "speed_up": loop_seconds / vectorised_seconds,
        "test_nll_iwae": float(np.mean(terms["nll_iwae"])),
        "same_images_nll_iwae": {"vectorised": vectorised_mean, "loop": float(looped.mean())},
    }
    suffix = "" if (args.samples, args.images, args.limit) == (1000, 10_000, None) else \
        f"_k{args.samples}_n{args.images}" + (f"_limit{args.limit}" if args.limit else "")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"evaluation_speed{suffix}.json").write_text(
        json.dumps(report, indent=2) + "\n")
    (args.results_dir / f"evaluation_speed{suffix}.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
