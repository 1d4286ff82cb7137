"""Check an exported SavedModel in a fresh process, with TensorFlow's own loader.

    python scripts/check_savedmodel.py saved_models/fashion_vae/1
    python scripts/check_savedmodel.py saved_models/fashion_vae            # highest version
    python scripts/check_savedmodel.py saved_models/fashion_vae/1 --run runs/vae --count 16
    python scripts/check_savedmodel.py saved_models/*/                     # several models

Loads PATH with tf.saved_model.load (no hml_vae layers needed), prints the signatures as
`saved_model_cli show --dir PATH --all` lists them and each signature's inputs and
outputs with their shapes, runs every signature on test images of the run's own data set
(the image signatures on the same pictures as PNG files and uint8 pixels; generate on a
fixed (count, seed), against the bundle's generate) and compares the outputs with the Keras
models of the run the SavedModel was exported
from (--run, default: the run recorded at export time) to within atol 1e-5 + rtol 1e-4.
When the run's data set cannot be loaded here, random images of the run's image shape are
compared instead (and the check says so). It then feeds bad requests (wrong rank, each
dimension wrong, NaN, infinity, 0-255 pixels, huge codings, another dtype; empty, non-image,
base64, oversized and truncated image files) to TensorFlow's C++ session as TF Serving
would, and checks that each is refused with a message naming the input. Exit code 0 only
when every signature matches and every bad request is refused; a SavedModel that cannot be
read or loaded is one line and exit code != 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hml_vae import cli
from hml_vae.errors import RunError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a SavedModel version directory, or a model directory (its "
                        "highest version is checked); several are checked in turn")
    parser.add_argument("--run", help="run directory to compare with (default: the one "
                        "recorded at export time, if it still exists); one PATH only")
    parser.add_argument("--count", type=cli.positive_int, default=8,
                        help="test images to run through each signature (default: 8)")
    parser.add_argument("--data-dir", help="where the run's data set is, when not where "
                        "the run found it")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def resolve_savedmodel(path: Path) -> Path:
    """``path`` if it holds saved_model.pb, else its highest integer version directory."""
    from hml_vae.export import existing_versions

    if (path / "saved_model.pb").exists():
        return path
    versions = existing_versions(path)
    if versions and (path / str(versions[-1]) / "saved_model.pb").exists():
        return path / str(versions[-1])
    raise FileNotFoundError(f"{path} holds no saved_model.pb and no version directory with "
                            f"one; pass saved_models/NAME/VERSION.")


def describe_loaded(loaded) -> list[str]:
    """One line per signature: its input keys -> output keys, with dtypes and shapes."""
    lines = []
    for name in sorted(loaded.signatures):
        function = loaded.signatures[name]
        inputs = function.structured_input_signature[1]
        outputs = function.structured_outputs

        def spec(key, tensor):
            return f"{key} {tensor.dtype.name} {tuple(tensor.shape)}"

        lines.append(f"{name}: " + ", ".join(spec(k, v) for k, v in sorted(inputs.items()))
                     + " -> " + ", ".join(spec(k, v) for k, v in sorted(outputs.items())))
    return lines


def comparison_images(run, image_shape, count: int, data_dir: str | None):
    """(images, what they are, whether they are test images): the run's first test images,
    or random images of ``image_shape`` when there is no run or its data set cannot be
    loaded here."""
    from hml_vae import export

    if run is not None:
        try:
            images = export.run_test_images(run.config, count, data_dir)
            return (images, f"the first {len(images)} test images of the run's data set",
                    True)
        except (ValueError, OSError) as error:  # DataError is a ValueError
            why = str(error).splitlines()[0].rstrip(".")
            print(f"\nThe run's data set cannot be used here: {why}. Comparing on random "
                  f"images instead.")
    images = export.random_images(image_shape, count)
    return images, f"{count} uniform random images of shape {tuple(image_shape)}", False


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.run and len(args.paths) > 1:
        raise ValueError(f"--run names the run of one SavedModel, got {len(args.paths)} "
                         f"paths; check them one by one, or leave out --run.")
    paths = [resolve_savedmodel(Path(path)) for path in args.paths]  # all, before loading
    for index, path in enumerate(paths):
        if index:
            print("\n" + "=" * 80 + "\n")
        check(path, args.run, args.count, args.data_dir)
    if len(paths) > 1:
        print(f"\nall {len(paths)} SavedModels match their Keras models and refuse bad "
              f"requests")


def check(path: Path, run_dir: str | None, count: int, data_dir: str | None) -> None:
    """Prints ``path``'s signatures, runs them, compares them with the run's models and
    checks that bad requests are refused.

    Raises:
        RunError: an output differs from the Keras model's beyond the tolerance, or a bad
            request was not refused with a message naming its input.
    """
    import numpy as np
    import tensorflow as tf

    from hml_vae import export
    from hml_vae.runs import load_run

    print(f"SavedModel: {path}\n")
    print(export.describe_signatures(path))  # SavedModelError for a corrupt saved_model.pb
    try:
        loaded = tf.saved_model.load(str(path))
    except (tf.errors.OpError, ValueError, OSError) as error:
        message = getattr(error, "message", str(error)).strip().splitlines()[0]
        raise RunError(f"{path} cannot be loaded by TensorFlow ({message}); export the run "
                       f"again.") from None
    print("\nSignatures loaded with tf.saved_model.load (inputs -> outputs):")
    for line in describe_loaded(loaded):
        print(f"  {line}")

    metadata = export.read_metadata(path) or {}
    given = run_dir
    run_dir = run_dir or metadata.get("run_dir")
    run = None
    if run_dir and Path(run_dir).exists():
        run = load_run(run_dir)
    elif given:
        raise RunError(f"{given} does not exist; pass the run the model was exported from.")
    image_shape = export.signature_image_shape(loaded)
    images, described, test_set = comparison_images(run, image_shape, count, data_dir)
    images = export.check_request_images(images, image_shape)

    if run is None:
        print(f"\nNo run to compare with (recorded: {run_dir}); running each signature on "
              f"{described} only.")
        for name in sorted(loaded.signatures):
            if name in ("serving_default", "encode"):
                outputs = export.run_signature(loaded, name, {"images": images})
                print(f"  {name}: " + ", ".join(
                    f"{key} {value.shape} in [{value.min():.3g}, {value.max():.3g}]"
                    for key, value in sorted(outputs.items())))
    else:
        models = run.load_models()
        print(f"\nComparing with the Keras models of {run.directory} on {described} "
              f"(atol {export.ATOL:g}, rtol {export.RTOL:g}):")
        try:
            results = export.verify_savedmodel(loaded, models, images)
        except ValueError as error:
            raise RunError(f"{path}: {error}") from None
        for name, differences in sorted(results.items()):
            print(f"  {name}: OK, max |exported - keras| " + ", ".join(
                f"{key} {value:.2g}" for key, value in sorted(differences.items())))
        summary = f"all {len(results)} signatures match"
        if test_set:
            rows = export.run_signature(loaded, "serving_default", {"images": images})
            error = float(np.mean((rows["reconstruction"] - images) ** 2))
            summary += f"; reconstruction MSE per pixel {error:.5f}"
        print(summary)

    print("\nBad requests fed to TensorFlow's C++ session unchecked, as TF Serving feeds "
          "them:")
    with export.ServingSession(path) as session:
        try:
            rejected = export.check_rejections(session)
        except ValueError as error:
            raise RunError(f"{path}: {error}") from None
    for name in sorted({request.signature for request, _ in rejected}):
        problems = [request.problem for request, _ in rejected if request.signature == name]
        print(f"  {name}: refused {len(problems)}: {', '.join(problems)}")
    example = next(message for request, message in rejected
                   if request.signature == "serving_default")
    print(f"all {len(rejected)} bad requests refused with a message naming the input, e.g. "
          f"{example}")


def console() -> int:
    """The ``hml-vae-check-savedmodel`` command."""
    return cli.run_main(main)


if __name__ == "__main__":
    sys.exit(console())
