"""Export a finished run as a versioned SavedModel for TensorFlow Serving.

    python scripts/export.py runs/vae --name fashion_vae
    python scripts/export.py runs/vae --name fashion_vae --base saved_models --version 3
    python scripts/export.py runs/vae --name fashion_vae --version 3 --overwrite
    python scripts/export.py runs/stacked --name stacked --models-config
    python scripts/export.py runs/vae --name fashion_vae --label canary   # + models.config

Writes saved_models/NAME/VERSION/ (the next free integer version by default) through a
hidden temporary directory renamed into place when complete, so TF Serving never loads
half a model. Signatures: serving_default (images (batch, H, W, C) of the run's image
shape -> reconstruction), encode, decode, for VAEs generate, and the same reconstruct and
encode for PNG/JPEG files (reconstruct_image_bytes, encode_image_bytes) and uint8 pixels
(reconstruct_uint8, encode_uint8); see hml_vae/export/ and the README. --models-config adds
or updates NAME in BASE/models.config, TF Serving's file for serving several models;
--label NAME also points a version label (stable, canary) at the new version there.
Everything (models.config included) is checked before the version is published; if a
later step fails, the new version is removed again and the error says so.
"""

from __future__ import annotations

import argparse
import signal
import sys

from hml_vae import cli
from hml_vae.errors import Interrupted
from hml_vae.runs import check_finished


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a finished run directory written by scripts/train.py")
    parser.add_argument("--name", required=True,
                        help="served model name (/v1/models/NAME): letters, digits, . _ -")
    parser.add_argument("--base", default="saved_models",
                        help="directory of served models (default: saved_models)")
    parser.add_argument("--version", type=cli.positive_int,
                        help="integer version to write (default: the next free one)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --version if it exists (default: refuse)")
    parser.add_argument("--models-config", action="store_true",
                        help="add or update NAME in BASE/models.config")
    parser.add_argument("--label", help="point this version label (e.g. stable, canary) at "
                        "the new version in BASE/models.config (implies --models-config)")
    parser.add_argument("--image-signatures", action=argparse.BooleanOptionalAction,
                        default=True, help="also write the signatures taking PNG/JPEG files "
                        "and uint8 pixels (default: yes)")
    parser.add_argument("--serving-base", default="/models",
                        help="where the server sees BASE, for models.config base_path "
                        "(default: /models, the Docker image's)")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from hml_vae.export import check_name  # no TensorFlow: fail fast on bad input

    check_name(args.name)
    if args.label is not None:
        check_name(args.label, "label", "--label canary")
    check_finished(args.run_dir)

    from hml_vae.export import export_run  # imports TensorFlow: after validation

    try:
        result = export_run(args.run_dir, args.name, args.base, args.version,
                            args.overwrite, args.models_config, args.serving_base, args.label,
                            args.image_signatures)
    except KeyboardInterrupt:  # export_run has taken back whatever it wrote
        raise Interrupted("the export was stopped; nothing was published, run the same "
                          "command again to export.", signal.SIGINT) from None
    print(f"exported {args.run_dir} as {args.name} version {result.version}: {result.path}")
    if result.models_config:
        labelled = f" (label {args.label} -> {result.version})" if args.label else ""
        print(f"model config: {result.models_config}{labelled}")
    for note in result.notes:
        print(f"model config: {note}")


def console() -> int:
    """The ``hml-vae-export`` command."""
    return cli.run_main(main)


if __name__ == "__main__":
    sys.exit(console())
