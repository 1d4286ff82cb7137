"""Check an exported SavedModel in a fresh process, with TensorFlow's own loader.

    python scripts/check_savedmodel.py saved_models/fashion_vae/1
    python scripts/check_savedmodel.py saved_models/fashion_vae            # highest version
    python scripts/check_savedmodel.py saved_models/fashion_vae/1 --run runs/vae --count 16
    python scripts/check_savedmodel.py saved_models/*/                     # several models

Loads PATH with tf.saved_model.load (no hml_vae layers needed), prints the signatures as
`saved_model_cli show --dir PATH --all` lists them and each signature's input and output
keys, runs every signature on test images and compares the outputs with the Keras models
of the run the SavedModel was exported from (--run, default: the run recorded at export
time) to within atol 1e-5 + rtol 1e-4. Exit code 0 only when every signature matches.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any checkout

from hml_vae import cli  # noqa: E402
from hml_vae.errors import RunError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a SavedModel version directory, or a model directory (its "
                        "highest version is checked); several are checked in turn")
    parser.add_argument("--run", help="run directory to compare with (default: the one "
                        "recorded at export time, if it still exists); one PATH only")
    parser.add_argument("--count", type=cli.positive_int, default=8,
                        help="test images to run through each signature (default: 8)")
    parser.add_argument("--data-dir", help="directory with the IDX files (default: the "
                        "run's data source)")
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


def sample_images(config, count: int, data_dir: str | None):
    """The first ``count`` test images of the run's data set, binarized as the run's."""
    if config is None:
        return _test_images("fashion_mnist", data_dir, "none", 42, count)
    return _test_images(config.dataset, data_dir or config.data_dir, config.binarize,
                        config.seed, count)


@functools.lru_cache(maxsize=8)  # several SavedModels of runs on the same data
def _test_images(name: str, data_dir: str | None, binarize: str, seed: int, count: int):
    from hml_vae import data as data_lib

    # A limit whose test split holds ``count`` images (10,000 test per 55,000 training):
    # binarizing the whole test set would cost more than the check.
    limit = min(data_lib.TRAIN_SIZE, count * 6)
    return data_lib.load_dataset(name, data_dir, limit, binarize, seed).test.images[:count]


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
        print(f"\nall {len(paths)} SavedModels match their Keras models")


def check(path: Path, run_dir: str | None, count: int, data_dir: str | None) -> None:
    """Prints ``path``'s signatures, runs them and compares them with the run's models.

    Raises:
        RunError: an output differs from the Keras model's beyond the tolerance.
    """
    import numpy as np
    import tensorflow as tf

    from hml_vae import export
    from hml_vae.runs import load_run

    print(f"SavedModel: {path}\n")
    print(export.describe_signatures(path))
    loaded = tf.saved_model.load(str(path))
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
    images = export.check_request_images(
        sample_images(run.config if run else None, count, data_dir))

    if run is None:
        print(f"\nNo run to compare with (recorded: {run_dir}); running each signature on "
              f"{len(images)} test images only.")
        for name in sorted(loaded.signatures):
            if name in ("serving_default", "encode"):
                outputs = export.run_signature(loaded, name, {"images": images})
                print(f"  {name}: " + ", ".join(
                    f"{key} {value.shape} in [{value.min():.3g}, {value.max():.3g}]"
                    for key, value in sorted(outputs.items())))
        return

    models = run.load_models()
    print(f"\nComparing with the Keras models of {run.directory} on {len(images)} test "
          f"images (atol {export.ATOL:g}, rtol {export.RTOL:g}):")
    try:
        results = export.verify_savedmodel(loaded, models, images)
    except ValueError as error:
        raise RunError(f"{path}: {error}") from None
    for name, differences in sorted(results.items()):
        print(f"  {name}: OK, max |exported - keras| " + ", ".join(
            f"{key} {value:.2g}" for key, value in sorted(differences.items())))
    rows = export.run_signature(loaded, "serving_default", {"images": images})
    print(f"all {len(results)} signatures match; reconstruction MSE per pixel "
          f"{float(np.mean((rows['reconstruction'] - images) ** 2)):.5f}")


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
