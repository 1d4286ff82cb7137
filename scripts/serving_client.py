"""Send test images to a running TensorFlow Serving and save what comes back.

    python scripts/serving_client.py --model fashion_vae
    python scripts/serving_client.py --model cifar_vae --run runs/cifar_vae
    python scripts/serving_client.py --model fashion_vae --protocol both --count 16 \
        --rest http://localhost:8501 --grpc localhost:8500 --output reconstructions.png
    python scripts/serving_client.py --model fashion_vae --signature encode --version 2

Start the server first (see the README), e.g.
    docker run -p 8501:8501 -p 8500:8500 \
        -v "$PWD/saved_models/fashion_vae:/models/fashion_vae" \
        -e MODEL_NAME=fashion_vae tensorflow/serving

Sends the first --count test images of the served run's data set (--run RUN: its data
source, binarization and image shape; without it Fashion-MNIST's, (28, 28, 1)) --repeat
times over REST (/v1/models/NAME:predict, {"signature_name", "instances"}) and/or gRPC
(PredictRequest; needs tensorflow-serving-api), prints the median and first request
times, and for serving_default saves the originals above the reconstructions as a PNG (one
row per protocol; colour images in colour).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from hml_vae import cli
from hml_vae.errors import RunError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the served model's name")
    parser.add_argument("--protocol", choices=("rest", "grpc", "both"), default="rest")
    parser.add_argument("--rest", default="http://localhost:8501",
                        help="REST address (default: http://localhost:8501)")
    parser.add_argument("--grpc", default="localhost:8500",
                        help="gRPC address host:port (default: localhost:8500)")
    parser.add_argument("--signature", choices=("serving_default", "encode"),
                        default="serving_default")
    parser.add_argument("--version", type=cli.positive_int,
                        help="model version to ask for (default: the served one)")
    parser.add_argument("--run", help="the run the served model was exported from: send "
                        "images of its data set and shape (default: Fashion-MNIST)")
    parser.add_argument("--count", type=cli.positive_int, default=8,
                        help="test images per request (default: 8)")
    parser.add_argument("--repeat", type=cli.positive_int, default=5,
                        help="requests per protocol, for the timings (default: 5)")
    parser.add_argument("--timeout", type=cli.positive_float, default=30.0,
                        help="seconds per request (default: 30)")
    parser.add_argument("--data-dir", help="where the data set is, when not where the run "
                        "found it (or not the installed Fashion-MNIST)")
    parser.add_argument("--output", default="reconstructions.png",
                        help="PNG of originals and reconstructions (default: "
                        "reconstructions.png)")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def timed_requests(send, repeat: int):
    """Calls ``send()`` ``repeat`` times; returns the last outputs and every duration."""
    seconds = []
    for _ in range(repeat):
        outputs, duration = send()
        seconds.append(duration)
    return outputs, seconds


def save_png(path: Path, images, rows: dict) -> None:
    """Originals above one row of reconstructions per protocol (images (N, H, W, C);
    colour shown in colour)."""
    import numpy as np

    from hml_vae.plots import image_grid

    grid = [("original", images)] + [
        (f"{name}", np.clip(outputs["reconstruction"], 0, 1)) for name, outputs in rows.items()
    ]
    figure = image_grid(grid, title="TF Serving reconstructions")
    figure.savefig(path)


def load_images(run_dir: str | None, count: int, data_dir: str | None):
    """(the first ``count`` test images to send, the served model's image shape (H, W, C)):
    of the run's data set as the run saw them, or of Fashion-MNIST without a run."""
    from hml_vae.config import Config
    from hml_vae.export import run_test_images
    from hml_vae.runs import load_run

    # Without a run, a config naming only a data source: the default one (Fashion-MNIST).
    config = load_run(run_dir).config if run_dir else Config(binarize="none")
    images = run_test_images(config, count, data_dir)
    return images, tuple(config.image_shape or images.shape[1:])


def main(argv=None) -> None:
    args = parse_args(argv)
    from hml_vae import serving

    images, image_shape = load_images(args.run, args.count, args.data_dir)
    protocols = ("rest", "grpc") if args.protocol == "both" else (args.protocol,)
    senders = {
        "rest": lambda: serving.rest_predict(args.rest, args.model, images, args.signature,
                                             args.version, args.timeout, image_shape),
        "grpc": lambda: serving.grpc_predict(args.grpc, args.model, images, args.signature,
                                             args.version, args.timeout, image_shape),
    }
    results = {}
    for protocol in protocols:
        try:
            outputs, seconds = timed_requests(senders[protocol], args.repeat)
        except serving.ServingError as error:  # one line, not a traceback
            raise RunError(str(error)) from None
        results[protocol] = outputs
        shapes = ", ".join(f"{key} {value.shape}" for key, value in sorted(outputs.items()))
        print(f"{protocol}: {len(images)} images of shape {image_shape}, {args.repeat} "
              f"requests: median {1000 * statistics.median(seconds):.1f} ms, first "
              f"{1000 * seconds[0]:.1f} ms; {shapes}")
    if args.signature == "serving_default":
        save_png(Path(args.output), images, results)
        print(f"reconstructions: {args.output}")


def console() -> int:
    """The ``hml-vae-serving-client`` command."""
    return cli.run_main(main)


if __name__ == "__main__":
    sys.exit(console())
