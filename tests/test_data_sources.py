"""hml_vae.data's other sources, all without network: .npz archives and folders of PNGs
written here (scikit-learn's bundled digits among them), tensorflow-datasets through
tfds.testing.mock_data and through small data sets prepared here; every bad input's
message; streamed splits against in-memory ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hml_vae import data as data_lib
from hml_vae.data import DataError

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")


def all_images(split) -> np.ndarray:
    return np.concatenate(list(split.batches(64)))


def epoch(pipeline) -> np.ndarray:
    return np.concatenate([x.numpy() for x, _ in pipeline])


def rows(images: np.ndarray) -> np.ndarray:
    """Images as sorted rows: compares two sets of images regardless of their order."""
    return np.sort(images.reshape(len(images), -1), axis=0)


def write_pngs(folder, images: np.ndarray, names=None):
    """One PNG per uint8 image (H, W) or (H, W, 3), named 000.png, 001.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        name = names[index] if names else f"{index:03d}.png"
        Image.fromarray(image).save(folder / name)
    return folder


def tagged_images(count: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random uint8 images whose first pixel holds their index: each one can be found again
    after the split has reordered them."""
    images = np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)
    images[:, 0, 0] = np.arange(count)[:, None] if len(shape) == 3 else np.arange(count)
    return images


def tags(images: np.ndarray) -> np.ndarray:
    return np.round(images[:, 0, 0, 0] * 255).astype(int)


# --- .npz archives: scikit-learn's digits -----------------------------------------------


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 1,797 bundled 8×8 digits, as uint8 (0-16 scaled to 0-255)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * 255 / 16).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


@pytest.fixture(scope="module")
def digits_npz(digits, tmp_path_factory):
    images, labels = digits
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez_compressed(path, images=images, labels=labels,
                        class_names=np.array([f"digit {n}" for n in range(10)]))
    return path


def test_npz_split_is_a_fixed_permutation_of_all_images(digits, digits_npz):
    images, labels = digits
    dataset = data_lib.load_dataset(npz=digits_npz)
    # 1,797 images: 1/7 (256) test, 1/12 of the other 1,541 (128) validation.
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (1_413, 128, 256)
    assert (dataset.name, dataset.source) == ("digits", str(digits_npz))
    assert dataset.image_shape == (8, 8, 1) and dataset.num_classes == 10
    assert dataset.class_names[3] == "digit 3"
    order = np.random.default_rng(data_lib.SPLIT_SEED).permutation(1_797)
    expected = {"test": order[-256:], "valid": order[:-256][-128:], "train": order[:1_413]}
    for name, indices in expected.items():
        split = getattr(dataset, name)
        np.testing.assert_array_equal(split.images[..., 0], images[indices] / np.float32(255))
        np.testing.assert_array_equal(split.labels, labels[indices])
    # The run's seed binarizes; it does not move images between splits.
    other = data_lib.load_dataset(npz=digits_npz, seed=7)
    np.testing.assert_array_equal(other.test.images, dataset.test.images)


def test_npz_limit_keeps_proportional_subsets(digits_npz):
    dataset = data_lib.load_dataset(npz=digits_npz, limit=300)
    # 300 of 1,413 training images: ceil(128 * 300 / 1413) and ceil(256 * 300 / 1413).
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (300, 28, 55)
    full = data_lib.load_dataset(npz=digits_npz)
    np.testing.assert_array_equal(dataset.train.images, full.train.images[:300])


def test_npz_of_float_rgb_images_without_labels(tmp_path):
    images = np.random.default_rng(0).random((40, 12, 10, 3))  # float64 in [0, 1)
    path = tmp_path / "colour.npz"
    np.savez(path, images=images)
    dataset = data_lib.load_dataset(npz=path)
    assert dataset.image_shape == (12, 10, 3)
    assert dataset.class_names is None and dataset.num_classes == 0
    assert dataset.train.labels is None and dataset.train.head(2)[1] is None
    loaded = np.concatenate([dataset.train.images, dataset.valid.images, dataset.test.images])
    np.testing.assert_array_equal(rows(loaded), rows(images.astype(np.float32)))


def test_npz_labels_without_names_are_numbered(tmp_path, digits):
    path = tmp_path / "plain.npz"
    np.savez(path, images=digits[0][:100], labels=digits[1][:100])
    assert data_lib.load_dataset(npz=path).class_names == tuple(str(n) for n in range(10))


def bad_npz_cases():
    images = np.zeros((20, 8, 8), np.uint8)
    return [
        ({"pictures": images}, "has no 'images' array .*pictures"),
        ({"images": np.zeros((20, 64), np.uint8)}, r"images of shape \(20, 64\); expected"),
        ({"images": np.zeros((20, 8, 8, 2), np.uint8)}, "C = 1 or 3"),
        ({"images": images, "labels": np.zeros(19, int)}, r"labels of shape \(19,\) for 20"),
        ({"images": np.full((20, 8, 8), 2.0)}, r"range over \[2, 2\]; expected \[0, 1\]"),
        ({"images": np.full((20, 8, 8), np.nan)}, "NaN"),
        ({"images": images.astype(np.int64)}, "dtype int64; expected uint8"),
        ({"images": np.zeros((20, 4, 4), np.uint8)}, "4×4 images, smaller than the 8×8"),
        ({"images": images, "labels": np.zeros(20), }, "labels of dtype float64"),
        ({"images": images, "labels": np.full(20, 3), "class_names": np.array(["a", "b"])},
         "expected at least 4 strings"),
    ]


@pytest.mark.parametrize(("arrays", "message"), bad_npz_cases())
def test_bad_npz_is_one_line_naming_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as caught:
        data_lib.load_dataset(npz=path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_npz_that_is_not_an_archive(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("not numpy")
    with pytest.raises(DataError, match="text.npz cannot be read as a .npz archive"):
        data_lib.load_dataset(npz=path)
    with pytest.raises(DataError, match="missing.npz does not exist"):
        data_lib.load_dataset(npz=tmp_path / "missing.npz")


# --- Folders of images ------------------------------------------------------------------


@pytest.fixture(scope="module")
def gray_classes(tmp_path_factory):
    """21 grayscale 32×32 PNGs in three class subfolders (7 each), and the images."""
    images = tagged_images(21, (32, 32), seed=1)
    root = tmp_path_factory.mktemp("gray") / "shapes"
    for label, name in enumerate(("circle", "square", "star")):
        write_pngs(root / name, images[label * 7 : (label + 1) * 7])
    return root, images, np.repeat(np.arange(3), 7)


@pytest.fixture(scope="module")
def rgb_flat(tmp_path_factory):
    """30 RGB 20×24 PNGs in one flat folder, and the images."""
    images = tagged_images(30, (20, 24, 3), seed=2)
    return write_pngs(tmp_path_factory.mktemp("rgb") / "photos", images), images


def test_class_subfolders_give_labels_and_exact_pixels(gray_classes):
    root, images, labels = gray_classes
    dataset = data_lib.load_dataset(images=root)
    assert (dataset.name, dataset.source) == ("shapes", str(root))
    assert dataset.class_names == ("circle", "square", "star")
    assert dataset.image_shape == (32, 32, 1)
    # 21 images: 3 test, 1 validation, 17 training; together every image once.
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (17, 1, 3)
    found = []
    for split in (dataset.train, dataset.valid, dataset.test):
        index = tags(split.images)
        np.testing.assert_array_equal(split.images[..., 0], images[index] / np.float32(255))
        np.testing.assert_array_equal(split.labels, labels[index])
        found += index.tolist()
    assert sorted(found) == list(range(21))


def test_flat_rgb_folder_has_no_labels(rgb_flat):
    root, images = rgb_flat
    dataset = data_lib.load_dataset(images=root)
    assert dataset.image_shape == (20, 24, 3)
    assert dataset.class_names is None and dataset.train.labels is None
    index = tags(dataset.train.images)
    np.testing.assert_array_equal(dataset.train.images, images[index] / np.float32(255))


def test_hidden_files_and_folders_are_not_data(tmp_path):
    write_pngs(tmp_path / "flat", tagged_images(12, (16, 16), seed=9))
    (tmp_path / "flat" / ".DS_Store").write_bytes(b"\0")
    write_pngs(tmp_path / "flat" / ".thumbnails", tagged_images(2, (4, 4), seed=9))
    dataset = data_lib.load_dataset(images=tmp_path / "flat")
    assert dataset.class_names is None  # a hidden folder is no class
    assert sum(map(len, (dataset.train, dataset.valid, dataset.test))) == 12


def test_digits_as_a_png_folder(digits, tmp_path):
    images, labels = digits[0][:200], digits[1][:200]
    for digit in range(10):
        chosen = np.flatnonzero(labels == digit)
        write_pngs(tmp_path / "digits" / str(digit), images[chosen],
                   names=[f"{index:04d}.png" for index in chosen])
    dataset = data_lib.load_dataset(images=tmp_path / "digits")
    assert dataset.class_names == tuple(str(n) for n in range(10))
    assert sum(map(len, (dataset.train, dataset.valid, dataset.test))) == 200
    # Same digits, same pixels, whichever order the split put them in.
    loaded = np.concatenate([dataset.train.images, dataset.valid.images, dataset.test.images])
    np.testing.assert_array_equal(rows(loaded[..., 0]), rows(images / np.float32(255)))


def test_resizing_and_colour_conversion_match_keras(rgb_flat):
    import keras
    import tensorflow as tf

    root, images = rgb_flat
    dataset = data_lib.load_dataset(images=root, image_size=(16, 16), color="grayscale")
    assert dataset.image_shape == (16, 16, 1)
    keras_images = np.concatenate([batch.numpy() / 255 for batch in
                                   keras.utils.image_dataset_from_directory(
                                       root, labels=None, color_mode="grayscale",
                                       image_size=(16, 16), shuffle=False, verbose=False)])
    loaded = np.concatenate([dataset.train.images, dataset.valid.images, dataset.test.images])
    np.testing.assert_allclose(rows(loaded), rows(keras_images.astype(np.float32)), atol=1e-6)
    # And against the written pixels, bilinearly resized (the split's order is the same
    # as without resizing, where the first pixel tells which image is which).
    order = tags(data_lib.load_dataset(images=root).train.images)
    resized = data_lib.load_dataset(images=root, image_size=(16, 16)).train.images
    expected = tf.image.resize(images[order].astype(np.float32), (16, 16)).numpy() / 255
    np.testing.assert_allclose(resized, expected, atol=1e-5)


def test_gray_folder_read_as_rgb_repeats_the_channel(gray_classes):
    dataset = data_lib.load_dataset(images=gray_classes[0], color="rgb")
    assert dataset.image_shape == (32, 32, 3)
    gray = data_lib.load_dataset(images=gray_classes[0])
    for channel in range(3):
        np.testing.assert_array_equal(dataset.train.images[..., channel],
                                      gray.train.images[..., 0])


def test_mixed_sizes_are_read_with_an_image_size(tmp_path):
    write_pngs(tmp_path / "mixed", tagged_images(10, (32, 32), seed=3))
    write_pngs(tmp_path / "mixed", tagged_images(10, (20, 24), seed=4),
               names=[f"small{n}.png" for n in range(10)])
    dataset = data_lib.load_dataset(images=tmp_path / "mixed", image_size=(24, 24))
    assert dataset.image_shape == (24, 24, 1)
    assert sum(map(len, (dataset.train, dataset.valid, dataset.test))) == 20


def bad_folder(tmp_path, kind: str):
    """A folder with one problem; returns (path, words the message must contain)."""
    root = tmp_path / "bad"
    gray = tagged_images(4, (16, 16), seed=5)
    if kind == "missing":
        return root, f"{root} does not exist; images= must be a folder"
    if kind == "file":
        root.write_text("x")
        return root, f"{root} is a file"
    if kind == "empty":
        (root / "cats").mkdir(parents=True)
        return root, f"{root} holds no images"
    if kind == "not an image":
        write_pngs(root, gray)
        (root / "notes.txt").write_text("x")
        return root, "notes.txt is not an image; expected only .bmp"
    if kind == "unreadable":
        write_pngs(root, gray)
        (root / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        return root, "002.png cannot be read as an image"
    if kind == "empty class":
        write_pngs(root / "cats", gray)
        (root / "dogs").mkdir()
        return root, "bad/dogs is an empty class subfolder"
    if kind == "top-level images":
        write_pngs(root / "cats", gray)
        write_pngs(root, gray[:1], names=["stray.png"])
        return root, r"images at its top level \(stray.png\) next to class subfolders"
    if kind == "mixed sizes":
        write_pngs(root, gray)
        write_pngs(root, tagged_images(1, (20, 24), seed=6), names=["wide.png"])
        return root, r"different sizes \(000.png is 16×16, wide.png is 20×24\).*--image-size"
    if kind == "too small":
        write_pngs(root, tagged_images(4, (4, 4), seed=7))
        return root, "4×4 images .* smaller than the 8×8 minimum"
    if kind == "mixed colour":
        write_pngs(root, gray)
        write_pngs(root, tagged_images(1, (16, 16, 3), seed=8), names=["colour.png"])
        return root, r"mixes grayscale \(000.png\) and colour \(colour.png\).*--color"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "not an image", "unreadable",
                                  "empty class", "top-level images", "mixed sizes",
                                  "too small", "mixed colour"])
def test_bad_folder_is_one_line_naming_the_problem(tmp_path, kind):
    root, message = bad_folder(tmp_path, kind)
    with pytest.raises(DataError, match=message) as caught:
        data_lib.load_dataset(images=root)
    assert "\n" not in str(caught.value)


# --- Streaming --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_both_ways(gray_classes):
    """The gray class folder in memory, and streamed with every split streamed."""
    root = gray_classes[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(data_lib.STREAM_BYTES_VARIABLE, "1")
        return (data_lib.load_dataset(images=root, streaming="memory"),
                data_lib.load_dataset(images=root, streaming="stream"))


def test_streamed_folder_reads_the_same_images_in_the_same_order(folder_both_ways):
    memory, streamed = folder_both_ways
    for name in ("train", "valid", "test"):
        split = getattr(streamed, name)
        assert not split.in_memory and split.image_shape == (32, 32, 1)
        np.testing.assert_array_equal(all_images(split), getattr(memory, name).images)
        np.testing.assert_array_equal(split.labels, getattr(memory, name).labels)
    np.testing.assert_array_equal(streamed.train.head(5)[0], memory.train.images[:5])
    with pytest.raises(DataError, match="is streamed from .*shapes"):
        streamed.test.images  # noqa: B018


def test_streamed_folder_pipeline_has_the_same_images_every_epoch(folder_both_ways):
    memory, streamed = folder_both_ways
    pipeline = streamed.train.pipeline(4, shuffle=True, seed=2, epochs=2)
    assert len(pipeline) == 2 * 5  # 17 images
    both = epoch(pipeline)
    first, second = both[:17], both[17:]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(rows(first), rows(memory.train.images))
    np.testing.assert_array_equal(rows(second), rows(memory.train.images))
    full = streamed.train.pipeline(4, shuffle=True, seed=2, full_batches=True)
    assert len(full) == 4 and len(epoch(full)) == 16


def test_auto_streams_when_the_threshold_is_small(digits_npz, monkeypatch):
    assert data_lib.load_dataset(npz=digits_npz).train.in_memory
    monkeypatch.setenv(data_lib.STREAM_BYTES_VARIABLE, str(10 * 8 * 8 * 4))
    dataset = data_lib.load_dataset(npz=digits_npz)
    assert not dataset.train.in_memory and not dataset.test.in_memory
    monkeypatch.setenv(data_lib.STREAM_BYTES_VARIABLE, str(500 * 8 * 8 * 4))
    dataset = data_lib.load_dataset(npz=digits_npz)  # 1,797 images > 500, 384 < 500
    assert not dataset.train.in_memory and dataset.valid.in_memory and dataset.test.in_memory


def test_streamed_npz_with_static_binarization(digits_npz, monkeypatch):
    monkeypatch.setenv(data_lib.STREAM_BYTES_VARIABLE, "1")
    dataset = data_lib.load_dataset(npz=digits_npz, binarize="static", seed=1)
    again = data_lib.load_dataset(npz=digits_npz, binarize="static", seed=1)
    gray = data_lib.load_dataset(npz=digits_npz, streaming="memory")
    images = all_images(dataset.train)
    assert set(np.unique(images)) == {0.0, 1.0}
    np.testing.assert_array_equal(images, all_images(again.train))
    assert abs(images.mean() - gray.train.images.mean()) < 0.01
    np.testing.assert_array_equal(rows(epoch(dataset.train.pipeline(100, shuffle=True))),
                                  rows(images))


# --- tensorflow-datasets ----------------------------------------------------------------


def mocked_cifar10(tmp_path, count: int):
    """tfds.testing.mock_data for cifar10 with metadata written here (its split sizes and
    class names), so that the mocked builder looks prepared."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=name, shard_lengths=[count], num_bytes=0,
                            filename_template=None)
        for name in ("train", "test")]))
    builder.info.features["label"].names = list(CIFAR10_NAMES)
    Path(builder.data_dir).mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)
    # The mock gives every split `count` random examples.
    return tfds.testing.mock_data(num_examples=count, data_dir=str(tmp_path))


def test_cifar10_through_mocked_tensorflow_datasets(tmp_path):
    with mocked_cifar10(tmp_path, count=60):
        dataset = data_lib.load_dataset("cifar10")
    assert dataset.image_shape == (32, 32, 3) and dataset.train.images.shape[1:] == (32, 32, 3)
    assert dataset.class_names == CIFAR10_NAMES and dataset.num_classes == 10
    # 60 training images: the last 1/12 (5) validate; the test split is the source's own.
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (55, 5, 60)
    assert dataset.name == "cifar10" and dataset.source.startswith("tensorflow-datasets in ")
    assert set(np.unique(dataset.test.labels)) <= set(range(10))
    assert 0.0 <= dataset.test.images.min() and dataset.test.images.max() <= 1.0


def test_tfds_not_prepared_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as caught:
        data_lib.load_dataset("cifar10")
    assert str(caught.value) == (
        f"tensorflow-datasets has no prepared 'cifar10' in {tmp_path} (TFDS_DATA_DIR); point "
        f"TFDS_DATA_DIR at a prepared copy or pass --download (needs network).")


def test_unknown_tfds_name_is_one_line_with_suggestions():
    with pytest.raises(DataError, match=r"no data set 'cifar_10' \(did you mean cifar10") as caught:
        data_lib.load_dataset("cifar_10")
    assert "\n" not in str(caught.value)


def test_tfds_without_images_is_refused():
    message = r"'imdb_reviews' has no 'image' feature \(it has: text, label\)"
    with pytest.raises(DataError, match=message):
        data_lib.load_dataset("imdb_reviews")


def make_builder(name: str, splits: dict[str, int], image_shape=(12, 10, 3), dtype=np.uint8):
    """A tensorflow-datasets builder class generating small random images, offline.

    Args:
        name: the class name (tfds registers it as its snake_case form).
        splits: examples per split.
    """
    import tensorflow_datasets as tfds

    def info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=image_shape, dtype=dtype),
            "label": tfds.features.ClassLabel(names=["a", "b", "c"])}))

    def split_generators(self, dl_manager):
        starts = np.cumsum([0, *splits.values()])
        return {split: self._generate_examples(start, start + count)
                for (split, count), start in zip(splits.items(), starts[:-1], strict=True)}

    def generate_examples(self, start, stop):
        images = tagged_images(stop, image_shape[:2], seed=0)[start:stop]
        for index, image in zip(range(start, stop), images, strict=True):
            image = np.repeat(image[..., None], image_shape[2], axis=-1)
            yield index, {"image": image.astype(dtype), "label": index % 3}

    return type(name, (tfds.core.GeneratorBasedBuilder,), {
        "VERSION": tfds.core.Version("1.0.0"), "_info": info,
        "_split_generators": split_generators, "_generate_examples": generate_examples,
        "__module__": __name__})


@pytest.fixture(scope="module")
def prepared_tfds(tmp_path_factory):
    """TFDS_DATA_DIR holding two small data sets prepared here: one with train, validation
    and test splits, one with a train split only."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tfds")
    make_builder("HmlThreeSplits", {"train": 30, "validation": 6, "test": 8})
    make_builder("HmlTrainOnly", {"train": 50})
    for name in ("hml_three_splits", "hml_train_only"):
        tfds.builder(name, data_dir=str(root)).download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return root


def test_tfds_validation_split_is_used(prepared_tfds, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(prepared_tfds))
    dataset = data_lib.load_dataset("hml_three_splits")
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (30, 6, 8)
    assert dataset.class_names == ("a", "b", "c") and dataset.image_shape == (12, 10, 3)
    assert dataset.source == f"tensorflow-datasets in {prepared_tfds}"
    expected = tagged_images(44, (12, 10), seed=0)
    for split, start in ((dataset.train, 0), (dataset.valid, 30), (dataset.test, 36)):
        index = tags(split.images)
        assert sorted(index) == list(range(start, start + len(split)))
        np.testing.assert_array_equal(split.images[..., 1], expected[index] / np.float32(255))
        np.testing.assert_array_equal(split.labels, index % 3)


@pytest.mark.parametrize("name", ["hml_three_splits", "hml_train_only"])
def test_streamed_tfds_matches_memory(prepared_tfds, monkeypatch, name):
    monkeypatch.setenv("TFDS_DATA_DIR", str(prepared_tfds))
    monkeypatch.setenv(data_lib.STREAM_BYTES_VARIABLE, "1")
    arguments = {"image_size": (16, 16), "color": "grayscale"}
    memory = data_lib.load_dataset(name, streaming="memory", **arguments)
    streamed = data_lib.load_dataset(name, streaming="stream", **arguments)
    assert streamed.image_shape == memory.image_shape == (16, 16, 1)
    for split in ("train", "valid", "test"):
        assert not getattr(streamed, split).in_memory
        np.testing.assert_allclose(all_images(getattr(streamed, split)),
                                   getattr(memory, split).images, atol=1e-6)
        np.testing.assert_array_equal(getattr(streamed, split).labels,
                                      getattr(memory, split).labels)
    shuffled = streamed.train.pipeline(8, shuffle=True, seed=3, epochs=2)
    both = epoch(shuffled)
    first, second = both[: len(both) // 2], both[len(both) // 2 :]
    later = epoch(streamed.train.pipeline(8, shuffle=True, seed=3, first_epoch=1))
    np.testing.assert_array_equal(later, second)  # the shuffle buffer is seeded by the epoch
    assert not np.array_equal(first, second)
    np.testing.assert_allclose(rows(first), rows(memory.train.images), atol=1e-6)
    np.testing.assert_allclose(rows(second), rows(memory.train.images), atol=1e-6)


def test_tfds_without_test_split_is_split_by_permutation(prepared_tfds, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(prepared_tfds))
    dataset = data_lib.load_dataset("hml_train_only")
    # 50 images: 7 test, 3 validation (43 // 12), 40 training; every image once.
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (40, 3, 7)
    found = np.concatenate([tags(split.images)
                            for split in (dataset.train, dataset.valid, dataset.test)])
    assert sorted(found) == list(range(50))


def test_tfds_images_that_are_not_uint8_are_refused(tmp_path, monkeypatch):
    make_builder("HmlWideImages", {"train": 4}, image_shape=(12, 10, 1), dtype=np.uint16)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="'hml_wide_images' stores images as uint16; expected "
                                        "uint8"):
        data_lib.load_dataset("hml_wide_images")
