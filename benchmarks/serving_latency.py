"""Benchmark: latency of an exported model's ``serving_default`` signature, loaded with
tf.saved_model.load (what TF Serving runs, minus its network and batching layers), for a
batch of 1 and of 256 images: median and 99th percentile; and of one-image requests over
REST and gRPC sent as floats, uint8 pixels and a PNG file (the image signatures). A
measurement, not a test.

    python benchmarks/serving_latency.py                                   # stacked, vae
    python benchmarks/serving_latency.py --models stacked,conv,vae,conv_vae --repeats 1000
    python benchmarks/serving_latency.py --savedmodel saved_models/fashion_vae/1
    python benchmarks/serving_latency.py --repeats 200 --stem serving_latency_short  # short
    python benchmarks/serving_latency.py --models vae --limit 500 --repeats 50 \
        --rounds 3 --requests-per-round 20 --stem serving_latency_quick     # quick

Requests go to hml_vae.export.LocalServer on 127.0.0.1 (TF Serving's REST and gRPC
predict APIs answering from the SavedModel in TensorFlow's C++ session; the real
tensorflow_model_server cannot be installed here), each as scripts/serving_client.py sends
it (JSON encoding or tensor conversion included, one connection per request). They are
timed in --rounds rounds, each sending --requests-per-round requests of every kind in
turn (the order rotates from round to round); every round's median and the median over
all requests are reported, with the commit the numbers were measured at.

Without --savedmodel, each model family is trained with its ``default`` preset (HOML's
architecture) for one epoch on the first --limit images, exported into a temporary
directory and timed: latency depends on the architecture, not on how well it is trained.
Protocol: --warmup calls first (tracing, allocations), then --repeats timed calls per
batch size on Fashion-MNIST test images, one call at a time (no concurrency). Writes
benchmarks/results/STEM.json and STEM.md with the machine description.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from any checkout

from hml_vae import cli, families  # noqa: E402
from hml_vae.config import make_config  # noqa: E402

MODELS = families.names()

BATCH_SIZES = (1, 256)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=cli.name_list(MODELS, "models"),
                        default=("stacked", "vae"),
                        help=f"comma-separated families to train and export (from: "
                        f"{', '.join(MODELS)}; default: stacked,vae)")
    parser.add_argument("--savedmodel", help="time this SavedModel instead of training")
    parser.add_argument("--limit", type=cli.positive_int, default=1000,
                        help="training images for the one-epoch runs (default: 1000)")
    parser.add_argument("--repeats", type=cli.positive_int, default=500,
                        help="timed calls per batch size (default: 500)")
    parser.add_argument("--warmup", type=cli.positive_int, default=20,
                        help="untimed calls first (default: 20)")
    parser.add_argument("--rounds", type=cli.positive_int, default=5,
                        help="rounds of REST/gRPC requests (default: 5)")
    parser.add_argument("--requests-per-round", type=cli.positive_int, default=50,
                        help="requests of each kind per round (default: 50)")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--stem", default="serving_latency",
                        help="file name of the results, without suffix")
    return parser.parse_args(argv)


def percentile(values: list[float], share: float) -> float:
    """The ``share`` (0-100) percentile, linearly interpolated (NumPy's default)."""
    import numpy as np

    return float(np.percentile(values, share))


def time_calls(function, inputs, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``function(**inputs)`` after ``warmup``;
    the outputs are fetched to NumPy so that the timing covers the whole computation."""
    for _ in range(warmup):
        function(**inputs)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        outputs = function(**inputs)
        for value in outputs.values():
            value.numpy()
        seconds.append(time.perf_counter() - started)
    return seconds


def measure(savedmodel: Path, images, warmup: int, repeats: int) -> list[dict]:
    """Latency rows (batch size, median, p99, mean in ms; images per second) of one
    SavedModel's serving_default."""
    import tensorflow as tf

    started = time.perf_counter()
    serving_default = tf.saved_model.load(str(savedmodel)).signatures["serving_default"]
    load_seconds = time.perf_counter() - started
    rows = []
    for batch_size in BATCH_SIZES:
        batch = tf.constant(images[:batch_size])
        seconds = time_calls(serving_default, {"images": batch}, warmup, repeats)
        median = statistics.median(seconds)
        rows.append({
            "batch_size": batch_size,
            "median_ms": 1000 * median,
            "p99_ms": 1000 * percentile(seconds, 99),
            "mean_ms": 1000 * statistics.fmean(seconds),
            "images_per_second": batch_size / median,
            "repeats": repeats,
            "load_seconds": load_seconds,
        })
    return rows


def request_senders(server, image):
    """{(protocol, kind): a function sending ``image`` (H, W, C) in [0, 1] once}."""
    from hml_vae import export, serving

    pixels = export.to_pixels(image[None])
    payloads = {"float32": image[None], "uint8": pixels,
                "image_bytes": export.encode_png(pixels)}
    addresses = {"rest": (serving.rest_predict, server.rest_url),
                 "grpc": (serving.grpc_predict, server.grpc_target)}
    senders = {}
    for protocol, (predict, address) in addresses.items():
        for kind, payload in payloads.items():
            signature = serving.REQUEST_KINDS[kind][0][0]
            senders[(protocol, kind)] = (
                lambda predict=predict, address=address, payload=payload, signature=signature,
                kind=kind: predict(address, "model", payload, signature, kind=kind))
    return senders


def measure_requests(savedmodel: Path, image, warmup: int, rounds: int, per_round: int):
    """Per (protocol, kind): every round's median request time and the median over all
    requests (ms)."""
    from hml_vae import export

    seconds = {}
    with export.ServingSession(savedmodel) as session, \
            export.LocalServer({"model": session}) as server:
        senders = request_senders(server, image)
        keys = list(senders)
        for key in keys:
            seconds[key] = []
            for _ in range(warmup):
                senders[key]()
        for round_index in range(rounds):
            order = keys[round_index % len(keys):] + keys[:round_index % len(keys)]
            for key in order:
                seconds[key].append([senders[key]()[1] for _ in range(per_round)])
    return [{"protocol": protocol, "kind": kind,
             "round_medians_ms": [1000 * statistics.median(times) for times in rounds_],
             "median_ms": 1000 * statistics.median([t for times in rounds_ for t in times]),
             "requests": sum(len(times) for times in rounds_)}
            for (protocol, kind), rounds_ in seconds.items()]


def export_trained(model: str, limit: int, directory: Path) -> Path:
    """Trains ``model`` (default preset, one epoch on ``limit`` images) and exports it."""
    from hml_vae.export import export_run
    from hml_vae.training import train_and_evaluate

    settings = {"iwae_samples": 8} if "iwae_samples" in families.get(model).options else {}
    config = make_config(model, "default", limit=limit, epochs=1, make_plots=False,
                         **settings)
    train_and_evaluate(config, directory / "runs" / model)
    return export_run(directory / "runs" / model, model, directory / "saved_models").path


def to_markdown(report: dict) -> str:
    from benchmarks.machine import stamp_line

    machine = report["machine"]
    lines = [
        "# Serving latency: `serving_default` via `tf.saved_model.load`",
        "",
        stamp_line(machine) + " A shared machine: compare rows of one run, not runs.",
        "",
        f"Protocol: {report['warmup']} warm-up calls, then {report['repeats']} timed calls "
        f"per batch size, one at a time, outputs fetched to NumPy; Fashion-MNIST test "
        f"images (float32, (batch, 28, 28)). {report['models_note']}",
        "",
        "| model | batch | median ms | p99 ms | mean ms | images/s | median ms per image |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in report["results"].items():
        for row in rows:
            lines.append(
                f"| {name} | {row['batch_size']} | {row['median_ms']:.3f} | "
                f"{row['p99_ms']:.3f} | {row['mean_ms']:.3f} | "
                f"{row['images_per_second']:.0f} | "
                f"{row['median_ms'] / row['batch_size']:.4f} |")
    lines += [
        "",
        "## One-image requests over REST and gRPC",
        "",
        "To hml_vae.export.LocalServer on 127.0.0.1 (TF "
        f"Serving's predict APIs answering from the SavedModel in TensorFlow's C++ "
        f"session), as scripts/serving_client.py sends them: one connection per request, "
        f"encoding included. {report['rounds']} rounds of {report['requests_per_round']} "
        f"requests of each kind after {report['warmup']} warm-up requests; float32 goes "
        f"to serving_default, uint8 to reconstruct_uint8, a PNG file to "
        f"reconstruct_image_bytes.",
        "",
        "| model | protocol | sent as | median ms per round | median ms | / float32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in report["requests"].items():
        floats = {row["protocol"]: row["median_ms"] for row in rows
                  if row["kind"] == "float32"}
        for row in rows:
            rounds = ", ".join(f"{value:.2f}" for value in row["round_medians_ms"])
            lines.append(f"| {name} | {row['protocol']} | {row['kind']} | {rounds} | "
                         f"{row['median_ms']:.2f} | "
                         f"{row['median_ms'] / floats[row['protocol']]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    import keras

    from benchmarks.machine import describe_machine, finished, write_results
    from hml_vae import data as data_lib

    machine = describe_machine()
    keras.utils.set_random_seed(0)
    images = data_lib.load_dataset("fashion_mnist", limit=max(BATCH_SIZES) * 6).test.images
    results, requests = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.savedmodel:
            targets = {args.savedmodel: Path(args.savedmodel)}
            note = f"SavedModel {args.savedmodel}."
        else:
            targets = {model: export_trained(model, args.limit, Path(scratch))
                       for model in args.models}
            note = (f"Models: each family's default preset (HOML's architecture), trained "
                    f"one epoch on {args.limit} images (latency does not depend on training).")
        for name, path in targets.items():
            results[name] = measure(path, images, args.warmup, args.repeats)
            for row in results[name]:
                print(f"{name} batch {row['batch_size']}: median {row['median_ms']:.3f} ms, "
                      f"p99 {row['p99_ms']:.3f} ms", file=sys.stderr)
            requests[name] = measure_requests(path, images[0], args.warmup, args.rounds,
                                              args.requests_per_round)
            for row in requests[name]:
                print(f"{name} {row['protocol']} {row['kind']}: rounds "
                      f"{[round(value, 2) for value in row['round_medians_ms']]} ms, median "
                      f"{row['median_ms']:.2f} ms", file=sys.stderr)
    report = {"machine": finished(machine), "warmup": args.warmup, "repeats": args.repeats,
              "models_note": note, "results": results, "rounds": args.rounds,
              "requests_per_round": args.requests_per_round, "requests": requests}
    results_dir = Path(args.results_dir)
    write_results(results_dir, args.stem, report, to_markdown)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
