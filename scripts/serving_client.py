"""Send pictures to a running TensorFlow Serving and save what comes back.

    python scripts/serving_client.py --model fashion_vae
    python scripts/serving_client.py --model cifar_vae --run runs/cifar_vae
    python scripts/serving_client.py --model digits_vae --dataset mnist --send uint8
    python scripts/serving_client.py --model fashion_vae --image shirt.png boot.jpg \
        --protocol both
    python scripts/serving_client.py --model fashion_vae --protocol both --count 16 \
        --rest http://localhost:8501 --grpc localhost:8500 --output reconstructions.png
    python scripts/serving_client.py --model fashion_vae --signature encode --version 2

Start the server first (see the README), e.g.
    docker run -p 8501:8501 -p 8500:8500 \
        -v "$PWD/saved_models/fashion_vae:/models/fashion_vae" \
        -e MODEL_NAME=fashion_vae tensorflow/serving

Without --image, sends the first --count test images of a data set: the served run's (--run
RUN: its data source, binarization and image shape), or the one the data source flags name
(--dataset, --npz, --data-dir, as train.py takes them; they also override the run's), else
Fashion-MNIST's. --send float32 (default) sends them to serving_default/encode as float
pixels in [0, 1], --send uint8 as 0-255 pixels to reconstruct_uint8/encode_uint8. --image
FILE... sends PNG/JPEG files as they are (any size, gray or colour) to
reconstruct_image_bytes/encode_image_bytes, which decode and resize them to the model's
image shape in the graph. Requests go --repeat times over REST (/v1/models/NAME:predict,
{"signature_name", "instances"}; files as {"b64": ...}) and/or gRPC (PredictRequest; needs
tensorflow-serving-api); the client prints the median and first request times and, for
reconstructions, saves the originals above the reconstructions as a PNG (one row per
protocol; colour images in colour).
"""

from __future__ import annotations

import argparse
import dataclasses
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
                        default="serving_default",
                        help="reconstruct (serving_default, or its image twin) or encode")
    parser.add_argument("--version", type=cli.positive_int,
                        help="model version to ask for (default: the served one)")
    parser.add_argument("--image", nargs="+", metavar="FILE",
                        help="PNG or JPEG files to send as they are, instead of test images")
    parser.add_argument("--send", choices=("float32", "uint8"), default="float32",
                        help="how test images are sent: float pixels in [0, 1] or uint8 "
                        "0-255 pixels (default: float32)")
    parser.add_argument("--run", help="the run the served model was exported from: send "
                        "images of its data set and shape (default: Fashion-MNIST)")
    data = parser.add_argument_group("data source of the test images (as train.py's flags;"
                                     " they override the run's)")
    data.add_argument("--dataset", help="fashion_mnist, mnist or a tensorflow-datasets name")
    data.add_argument("--npz", help="an .npz file with 'images'")
    data.add_argument("--data-dir", help="where the data set is, when not where the run "
                      "found it (or not the installed Fashion-MNIST)")
    parser.add_argument("--count", type=cli.positive_int, default=8,
                        help="test images per request (default: 8)")
    parser.add_argument("--repeat", type=cli.positive_int, default=5,
                        help="requests per protocol, for the timings (default: 5)")
    parser.add_argument("--timeout", type=cli.positive_float, default=30.0,
                        help="seconds per request (default: 30)")
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


def data_config(run_dir: str | None, dataset: str | None = None, npz: str | None = None):
    """The config whose data source the test images come from: the run's, with the data
    source flags given here instead of its own; without a run, the flags' (default
    Fashion-MNIST, not binarized)."""
    from hml_vae.config import Config
    from hml_vae.runs import load_run

    config = load_run(run_dir).config if run_dir else Config(binarize="none")
    changes = {key: value for key, value in (("dataset", dataset), ("npz", npz))
               if value is not None}
    if changes:  # one source: a data set named here replaces the run's file, and back
        changes = {"images": None, "npz": None} | changes
    return dataclasses.replace(config, **changes)


def load_images(run_dir: str | None, count: int, data_dir: str | None,
                dataset: str | None = None, npz: str | None = None):
    """(the first ``count`` test images to send, the served model's image shape (H, W, C)):
    of the data set of :func:`data_config`."""
    from hml_vae.export import run_test_images

    config = data_config(run_dir, dataset, npz)
    images = run_test_images(config, count, data_dir)
    return images, tuple(config.image_shape or images.shape[1:])


def file_images(files: list[bytes], image_shape):
    """The pictures in ``files`` as the served graph sees them (decoded, converted and
    resized to ``image_shape``), to show beside the reconstructions."""
    import numpy as np
    import tensorflow as tf

    from hml_vae.export.checks import images_from_bytes

    return np.asarray(images_from_bytes(tf.constant(files), image_shape))


def main(argv=None) -> None:
    args = parse_args(argv)
    from hml_vae import serving
    from hml_vae.export import read_image_file, to_pixels

    if args.image:
        files = [read_image_file(path) for path in args.image]  # before any request
        _, image_shape = load_images(args.run, 1, args.data_dir, args.dataset, args.npz)
        kind, payload = "image_bytes", files
        images = file_images(files, image_shape)
    else:
        images, image_shape = load_images(args.run, args.count, args.data_dir, args.dataset,
                                          args.npz)
        kind = args.send
        payload = to_pixels(images) if kind == "uint8" else images
        if kind == "uint8":  # show what was sent
            images = payload / 255.0
    signatures, _ = serving.REQUEST_KINDS[kind]
    signature = signatures[0] if args.signature == "serving_default" else signatures[1]
    protocols = ("rest", "grpc") if args.protocol == "both" else (args.protocol,)
    senders = {
        "rest": lambda: serving.rest_predict(args.rest, args.model, payload, signature,
                                             args.version, args.timeout, image_shape, kind),
        "grpc": lambda: serving.grpc_predict(args.grpc, args.model, payload, signature,
                                             args.version, args.timeout, image_shape, kind),
    }
    results = {}
    for protocol in protocols:
        try:
            outputs, seconds = timed_requests(senders[protocol], args.repeat)
        except serving.ServingError as error:  # one line, not a traceback
            raise RunError(str(error)) from None
        results[protocol] = outputs
        shapes = ", ".join(f"{key} {value.shape}" for key, value in sorted(outputs.items()))
        print(f"{protocol}: {len(images)} images of shape {image_shape} as {kind} to "
              f"{signature}, {args.repeat} requests: median "
              f"{1000 * statistics.median(seconds):.1f} ms, first {1000 * seconds[0]:.1f} ms; "
              f"{shapes}")
    if args.signature == "serving_default":
        save_png(Path(args.output), images, results)
        print(f"reconstructions: {args.output}")


def console() -> int:
    """The ``hml-vae-serving-client`` command."""
    return cli.run_main(main)


if __name__ == "__main__":
    sys.exit(console())
