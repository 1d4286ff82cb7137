"""hml_vae.data: the IDX reader on real and corrupt files, the source order, the split and
the tf.data pipelines."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import FASHION_DIR, write_idx

from hml_vae import data as data_lib
from hml_vae.data import DataError

# --- IDX reader on the real files -------------------------------------------------------


def test_real_fashion_mnist_files(fashion_raw):
    assert fashion_raw["train_images"].shape == (60_000, 28, 28)
    assert fashion_raw["test_images"].shape == (10_000, 28, 28)
    assert fashion_raw["train_images"].dtype == np.uint8
    assert fashion_raw["train_labels"].shape == (60_000,)
    assert set(np.unique(fashion_raw["train_labels"])) == set(range(10))
    assert set(np.unique(fashion_raw["test_labels"])) == set(range(10))


def test_homl_split_sizes_and_scaling():
    dataset = data_lib.load_dataset("fashion_mnist")
    assert dataset.source == str(FASHION_DIR)
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (55_000, 5_000, 10_000)
    for split in (dataset.train, dataset.valid, dataset.test):
        assert split.images.dtype == np.float32
        assert split.images.shape[1:] == (28, 28)
        assert split.images.min() == 0.0 and split.images.max() == 1.0
    assert dataset.class_names[9] == "Ankle boot"


def test_validation_is_the_last_5000_training_images(fashion_raw):
    dataset = data_lib.load_dataset("fashion_mnist", limit=1_100)
    np.testing.assert_array_equal(dataset.valid.labels, fashion_raw["train_labels"][55_000:55_100])
    np.testing.assert_array_equal(dataset.train.images * 255, fashion_raw["train_images"][:1_100])


def test_limit_keeps_the_first_images_and_proportional_subsets():
    dataset = data_lib.load_dataset("fashion_mnist", limit=2_000)
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (2_000, 182, 364)


@pytest.mark.parametrize("limit", [0, -5])
def test_non_positive_limit_is_an_error(limit):
    with pytest.raises(DataError, match="limit must be a positive"):
        data_lib.load_dataset("fashion_mnist", limit=limit)


def test_raw_and_gzip_files_read_the_same(tmp_path):
    array = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    raw = write_idx(tmp_path / "raw", array, compress=False)
    packed = write_idx(tmp_path / "packed", array, compress=True)
    np.testing.assert_array_equal(data_lib.read_idx(raw, data_lib.IMAGES_MAGIC), array)
    np.testing.assert_array_equal(data_lib.read_idx(packed, data_lib.IMAGES_MAGIC), array)


# --- Corrupt files: each failure names the file -----------------------------------------


def test_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="images.gz.*corrupt or truncated"):
        data_lib.read_idx(path, data_lib.IMAGES_MAGIC)


def test_not_gzip_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data_lib.read_idx(path, data_lib.IMAGES_MAGIC)


def test_wrong_magic_number_names_the_file(tmp_path):
    labels = write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"labels.gz: magic number 0x00000801, expected 0x00000803"):
        data_lib.read_idx(labels, data_lib.IMAGES_MAGIC)


def test_payload_shorter_than_header_says_truncated(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(gzip.decompress(
        write_idx(tmp_path / "full", np.zeros((4, 28, 28), np.uint8)).read_bytes()
    )[:-28])
    with pytest.raises(DataError, match="images: the header announces shape"):
        data_lib.read_idx(path, data_lib.IMAGES_MAGIC)


def test_image_and_label_counts_must_match(small_idx_dir, fashion_raw):
    (small_idx_dir / "t10k-labels-idx1-ubyte").unlink()
    write_idx(small_idx_dir / "t10k-labels-idx1-ubyte", fashion_raw["test_labels"][:999])
    with pytest.raises(DataError, match="1000 images but .*t10k-labels-idx1-ubyte.gz holds 999"):
        data_lib.read_idx_directory(small_idx_dir)


def test_missing_file_in_data_dir_is_named(small_idx_dir):
    (small_idx_dir / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing train-labels-idx1-ubyte"):
        data_lib.load_dataset("fashion_mnist", data_dir=str(small_idx_dir))


# --- Source order -----------------------------------------------------------------------


def test_data_dir_comes_first(small_idx_dir):
    dataset = data_lib.load_dataset("fashion_mnist", data_dir=str(small_idx_dir))
    assert dataset.source == str(small_idx_dir)
    assert len(dataset.train) == 600 and len(dataset.test) == 1_000  # the small copy


def test_environment_variable_is_second(small_idx_dir, monkeypatch):
    monkeypatch.setenv(data_lib.DATA_DIR_VARIABLE, str(small_idx_dir))
    assert data_lib.load_dataset("fashion_mnist").source == str(small_idx_dir)


def test_explicit_directory_never_falls_back(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing} \\(--data-dir\\) is not a directory"):
        data_lib.load_dataset("fashion_mnist", data_dir=str(missing))


def test_nothing_anywhere_names_every_place_and_every_way(tmp_path, monkeypatch):
    monkeypatch.delenv(data_lib.DATA_DIR_VARIABLE, raising=False)
    monkeypatch.setitem(data_lib.DEBIAN_DIRS, "fashion_mnist", tmp_path / "no-debian")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no-tfds"))
    with pytest.raises(DataError) as caught:
        data_lib.load_dataset("fashion_mnist")
    message = str(caught.value)
    for expected in ("--data-dir and HML_VAE_DATA_DIR", "no-debian", "dataset-fashion-mnist",
                     "no-tfds", "not prepared", "--download", "TFDS_DATA_DIR"):
        assert expected in message


def test_unknown_dataset_is_an_error():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'"):
        data_lib.load_dataset("cifar10")


# --- Binarization and pipelines ---------------------------------------------------------


def test_static_binarization_is_binary_and_fixed_by_the_seed():
    first = data_lib.load_dataset("fashion_mnist", limit=500, binarize="static", seed=3)
    again = data_lib.load_dataset("fashion_mnist", limit=500, binarize="static", seed=3)
    gray = data_lib.load_dataset("fashion_mnist", limit=500)
    assert set(np.unique(first.train.images)) == {0.0, 1.0}
    np.testing.assert_array_equal(first.train.images, again.train.images)
    # Each pixel is on with probability equal to its intensity.
    assert abs(first.train.images.mean() - gray.train.images.mean()) < 0.01


def test_dynamic_binarization_fixes_validation_and_test_images():
    dataset = data_lib.load_dataset("fashion_mnist", limit=500, binarize="dynamic", seed=3)
    static = data_lib.load_dataset("fashion_mnist", limit=500, binarize="static", seed=3)
    assert len(np.unique(dataset.train.images)) > 2  # gray: the pipeline draws each epoch
    np.testing.assert_array_equal(dataset.test.images, static.test.images)
    np.testing.assert_array_equal(dataset.valid.images, static.valid.images)


def batches(pipeline):
    return [x.numpy() for x, _ in pipeline]


def test_pipeline_batches_shapes_and_range():
    images = data_lib.load_dataset("fashion_mnist", limit=300).train.images
    pipeline = data_lib.make_pipeline(images, batch_size=128, image_shape=(28, 28, 1))
    inputs, targets = next(iter(pipeline))
    assert inputs.shape == (128, 28, 28, 1) and targets.shape == (128, 28, 28, 1)
    shapes = [batch.shape[0] for batch in batches(pipeline)]
    assert shapes == [128, 128, 44]
    values = np.concatenate(batches(pipeline))
    assert values.min() >= 0.0 and values.max() <= 1.0
    np.testing.assert_array_equal(values[..., 0], images)  # unshuffled: in order


def test_shuffling_is_fixed_by_the_seed_and_changes_each_epoch():
    images = data_lib.load_dataset("fashion_mnist", limit=300).train.images
    first = data_lib.make_pipeline(images, 64, shuffle=True, seed=1)
    second = data_lib.make_pipeline(images, 64, shuffle=True, seed=1)
    other = data_lib.make_pipeline(images, 64, shuffle=True, seed=2)
    epoch_one, epoch_two = batches(first), batches(first)
    np.testing.assert_array_equal(epoch_one[0], batches(second)[0])
    assert not np.array_equal(epoch_one[0], epoch_two[0])
    assert not np.array_equal(epoch_one[0], batches(other)[0])
    np.testing.assert_array_equal(np.sort(np.concatenate(epoch_one).ravel()),
                                  np.sort(images.ravel()))


def test_dynamic_binarization_redraws_every_epoch():
    images = data_lib.load_dataset("fashion_mnist", limit=256).train.images
    pipeline = data_lib.make_pipeline(images, 256, seed=5, binarize="dynamic")
    epoch_one, epoch_two = batches(pipeline)[0], batches(pipeline)[0]
    assert set(np.unique(epoch_one)) == {0.0, 1.0}
    assert 0.05 < np.mean(epoch_one != epoch_two) < 0.5
    again = batches(data_lib.make_pipeline(images, 256, seed=5, binarize="dynamic"))[0]
    np.testing.assert_array_equal(epoch_one, again)
    assert abs(epoch_one.mean() - images.mean()) < 0.01


def test_full_batches_leave_out_a_different_remainder_each_epoch():
    images = data_lib.load_dataset("fashion_mnist", limit=300).train.images  # 4 × 64 + 44
    pipeline = data_lib.make_pipeline(images, 64, shuffle=True, seed=1, full_batches=True)
    epoch_one, epoch_two = np.concatenate(batches(pipeline)), np.concatenate(batches(pipeline))
    assert len(epoch_one) == len(epoch_two) == 4 * 64
    assert [len(batch) for batch in batches(pipeline)] == [64] * 4
    assert not np.array_equal(np.sort(epoch_one.ravel()), np.sort(epoch_two.ravel()))
    in_order = data_lib.make_pipeline(images, 64, full_batches=True)
    np.testing.assert_array_equal(np.concatenate(batches(in_order)), images[: 4 * 64])
    # Fewer images than one batch: one smaller batch rather than none.
    assert [len(batch) for batch in batches(
        data_lib.make_pipeline(images[:10], 64, shuffle=True, full_batches=True))] == [10]

