"""hml_vae.data: the IDX reader on real and corrupt files, the source order, HOML's split,
arguments, binarization, the tf.data pipelines, and streamed splits of IDX data.

The other sources (tensorflow-datasets, folders, .npz) are tested in test_data_sources.py.
"""

from __future__ import annotations

import gzip
from types import SimpleNamespace

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
        assert split.images.shape[1:] == (28, 28, 1)
        assert split.images.min() == 0.0 and split.images.max() == 1.0
        assert split.in_memory and split.image_shape == (28, 28, 1)
    assert dataset.class_names[9] == "Ankle boot" and dataset.num_classes == 10
    assert dataset.image_shape == (28, 28, 1)
    assert dataset.describe() == (
        f"fashion_mnist (28×28×1) from {FASHION_DIR}: 55,000 train, 5,000 valid, 10,000 test")


def test_validation_is_the_last_5000_training_images(fashion_raw):
    dataset = data_lib.load_dataset("fashion_mnist", limit=1_100)
    np.testing.assert_array_equal(dataset.valid.labels, fashion_raw["train_labels"][55_000:55_100])
    np.testing.assert_array_equal(dataset.train.images[..., 0] * 255,
                                  fashion_raw["train_images"][:1_100])
    np.testing.assert_array_equal(dataset.test.labels, fashion_raw["test_labels"][:200])
    assert dataset.train.labels.dtype == np.int64


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
    assert "\n" not in message  # one line, in a notebook too
    for expected in ("--data-dir and HML_VAE_DATA_DIR", "no-debian", "dataset-fashion-mnist",
                     "no-tfds", "not prepared", "--download", "TFDS_DATA_DIR"):
        assert expected in message


def test_data_dir_is_only_for_idx_files(small_idx_dir):
    with pytest.raises(DataError, match="for the IDX files of .*set TFDS_DATA_DIR instead"):
        data_lib.load_dataset("cifar10", data_dir=str(small_idx_dir))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"binarize": "sometimes"}, "unknown binarization 'sometimes'"),
     ({"streaming": "lazy"}, "unknown streaming 'lazy'"),
     ({"color": "sepia"}, "unknown color 'sepia'"),
     ({"image_size": (4, 4)}, r"image_size must be .* each at least 8; got \(4, 4\)"),
     ({"image_size": 32}, "image_size must be two whole numbers"),
     ({"image_size": (32.5, 32)}, "image_size must be two whole numbers")],
)
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(DataError, match=message):
        data_lib.load_dataset("fashion_mnist", **arguments)


def test_load_for_config_passes_every_source_field(small_idx_dir):
    config = SimpleNamespace(
        dataset="fashion_mnist", data_dir=str(small_idx_dir), download=False, images=None,
        npz=None, image_size=[32, 32], color="rgb", streaming="auto", limit=100,
        binarize="none", seed=0)
    dataset = data_lib.load_for_config(config)
    assert dataset.source == str(small_idx_dir)
    assert dataset.image_shape == (32, 32, 3) and dataset.train.images.shape == (100, 32, 32, 3)
    # Gray to RGB repeats the channel; 28 -> 32 is a bilinear resize.
    np.testing.assert_array_equal(dataset.train.images[..., 0], dataset.train.images[..., 2])


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


def epochs(pipeline, count: int = 2):
    """The batches of a pipeline of ``count`` epochs, one list per epoch."""
    every = batches(pipeline)
    per_epoch = len(every) // count
    return [every[start : start + per_epoch] for start in range(0, len(every), per_epoch)]


def test_pipeline_batches_shapes_and_range():
    images = data_lib.load_dataset("fashion_mnist", limit=300).train.images
    pipeline = data_lib.make_pipeline(images, batch_size=128)
    inputs, targets = next(iter(pipeline))
    assert inputs.shape == (128, 28, 28, 1) and targets.shape == (128, 28, 28, 1)
    shapes = [batch.shape[0] for batch in batches(pipeline)]
    assert shapes == [128, 128, 44]
    values = np.concatenate(batches(pipeline))
    np.testing.assert_array_equal(values, images)  # unshuffled: in order
    flat = data_lib.make_pipeline(images, batch_size=128, image_shape=(784,))
    assert next(iter(flat))[0].shape == (128, 784)


def test_shuffling_is_fixed_by_the_seed_and_changes_each_epoch():
    images = data_lib.load_dataset("fashion_mnist", limit=300).train.images
    first = data_lib.make_pipeline(images, 64, shuffle=True, seed=1, epochs=2)
    second = data_lib.make_pipeline(images, 64, shuffle=True, seed=1)
    other = data_lib.make_pipeline(images, 64, shuffle=True, seed=2)
    assert len(first) == 2 * 5
    epoch_one, epoch_two = epochs(first)
    np.testing.assert_array_equal(epoch_one[0], batches(second)[0])
    assert not np.array_equal(epoch_one[0], epoch_two[0])
    assert not np.array_equal(epoch_one[0], batches(other)[0])
    np.testing.assert_array_equal(np.sort(np.concatenate(epoch_one).ravel()),
                                  np.sort(images.ravel()))


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_a_pipeline_started_at_epoch_e_reads_epoch_e_of_one_started_at_zero(shuffle,
                                                                           binarize):
    """Order and binary draws are a function of (seed, epoch), not of how many epochs a
    pipeline (or an iterator) read before: what a resumed run relies on."""
    import tensorflow as tf

    images = data_lib.load_dataset("fashion_mnist", limit=300).train.images  # 4 × 64 + 44
    arguments = {"batch_size": 64, "shuffle": shuffle, "seed": 7, "binarize": binarize,
                 "full_batches": True}
    from_zero = epochs(data_lib.make_pipeline(images, epochs=5, **arguments), 5)
    assert not np.array_equal(np.concatenate(from_zero[2]), np.concatenate(from_zero[3])) \
        or (not shuffle and binarize == "none")
    epoch = tf.Variable(0, dtype=tf.int64)
    read_from_variable = data_lib.make_pipeline(images, first_epoch=epoch, **arguments)
    for first in (3, 2):
        started_later = batches(data_lib.make_pipeline(images, first_epoch=first, **arguments))
        assert len(started_later) == len(from_zero[first]) == 4
        for later, straight in zip(started_later, from_zero[first], strict=True):
            np.testing.assert_array_equal(later, straight)
        endless = data_lib.make_pipeline(images, first_epoch=first, epochs=None, **arguments)
        assert endless.cardinality() == tf.data.INFINITE_CARDINALITY
        np.testing.assert_array_equal(batches(endless.take(5))[4], from_zero[first + 1][0])
        epoch.assign(first)  # read when an iteration starts
        np.testing.assert_array_equal(np.concatenate(batches(read_from_variable)),
                                      np.concatenate(from_zero[first]))


def test_dynamic_binarization_redraws_every_epoch():
    images = data_lib.load_dataset("fashion_mnist", limit=256).train.images
    pipeline = data_lib.make_pipeline(images, 256, seed=5, binarize="dynamic", epochs=2)
    epoch_one, epoch_two = batches(pipeline)
    assert set(np.unique(epoch_one)) == {0.0, 1.0}
    assert 0.05 < np.mean(epoch_one != epoch_two) < 0.5
    again = batches(data_lib.make_pipeline(images, 256, seed=5, binarize="dynamic"))[0]
    np.testing.assert_array_equal(epoch_one, again)
    assert abs(epoch_one.mean() - images.mean()) < 0.01


def test_full_batches_leave_out_a_different_remainder_each_epoch():
    images = data_lib.load_dataset("fashion_mnist", limit=300).train.images  # 4 × 64 + 44
    pipeline = data_lib.make_pipeline(images, 64, shuffle=True, seed=1, full_batches=True,
                                      epochs=2)
    epoch_one, epoch_two = (np.concatenate(epoch) for epoch in epochs(pipeline))
    assert len(epoch_one) == len(epoch_two) == 4 * 64
    assert [len(batch) for batch in batches(pipeline)] == [64] * 8
    assert not np.array_equal(np.sort(epoch_one.ravel()), np.sort(epoch_two.ravel()))
    in_order = data_lib.make_pipeline(images, 64, full_batches=True)
    np.testing.assert_array_equal(np.concatenate(batches(in_order)), images[: 4 * 64])
    # Fewer images than one batch: one smaller batch rather than none.
    assert [len(batch) for batch in batches(
        data_lib.make_pipeline(images[:10], 64, shuffle=True, full_batches=True))] == [10]



# --- Split: in memory and streamed ----------------------------------------------------


def test_split_head_and_batches_in_memory():
    split = data_lib.load_dataset("fashion_mnist", limit=300).train
    images, labels = split.head(10)
    np.testing.assert_array_equal(images, split.images[:10])
    np.testing.assert_array_equal(labels, split.labels[:10])
    assert [len(batch) for batch in split.batches(128)] == [128, 128, 44]
    np.testing.assert_array_equal(np.concatenate(list(split.batches(128))), split.images)


@pytest.fixture(scope="module")
def memory_and_streamed():
    """The same IDX subset loaded into memory and, forced, streamed."""
    arguments = {"limit": 1_000}
    return (data_lib.load_dataset("fashion_mnist", **arguments),
            data_lib.load_dataset("fashion_mnist", streaming="stream", **arguments))


def test_forced_streaming_streams_the_training_split(memory_and_streamed):
    memory, streamed = memory_and_streamed
    assert not streamed.train.in_memory
    assert streamed.valid.in_memory and streamed.test.in_memory  # small: kept in memory
    assert (len(streamed.train), streamed.train.image_shape) == (1_000, (28, 28, 1))
    np.testing.assert_array_equal(streamed.train.labels, memory.train.labels)
    assert "1,000 train (streamed), 91 valid, 182 test" in streamed.describe()
    with pytest.raises(DataError, match="streamed from .* use split.batches"):
        streamed.train.images  # noqa: B018


def test_streamed_split_reads_the_same_images_in_the_same_order(memory_and_streamed):
    memory, streamed = memory_and_streamed
    np.testing.assert_array_equal(np.concatenate(list(streamed.train.batches(300))),
                                  memory.train.images)
    assert [len(batch) for batch in streamed.train.batches(300)] == [300, 300, 300, 100]
    head, labels = streamed.train.head(7)
    np.testing.assert_array_equal(head, memory.train.images[:7])
    np.testing.assert_array_equal(labels, memory.train.labels[:7])


def test_streamed_pipeline_shuffles_like_the_in_memory_one(memory_and_streamed):
    memory, streamed = memory_and_streamed
    from_memory = memory.train.pipeline(128, shuffle=True, seed=4, epochs=2)
    from_stream = streamed.train.pipeline(128, shuffle=True, seed=4, epochs=2)
    assert len(from_stream) == len(from_memory) == 2 * 8
    first, second = (np.concatenate(epoch) for epoch in epochs(from_stream))
    assert not np.array_equal(first, second)  # a new order each epoch
    for epoch in (first, second):  # the same images each epoch
        np.testing.assert_array_equal(np.sort(epoch.reshape(len(epoch), -1), axis=0),
                                      np.sort(memory.train.images.reshape(1_000, -1), axis=0))
    # An index permutation either way: the very same order, epoch by epoch.
    np.testing.assert_array_equal(np.concatenate(batches(from_stream)),
                                  np.concatenate(batches(from_memory)))


def test_streamed_full_batches_drop_the_remainder(memory_and_streamed):
    _, streamed = memory_and_streamed
    pipeline = streamed.train.pipeline(128, shuffle=True, full_batches=True)
    assert len(pipeline) == 7 and [len(batch) for batch in batches(pipeline)] == [128] * 7
    in_order = streamed.train.pipeline(128, full_batches=True)
    assert [len(batch) for batch in batches(in_order)] == [128] * 7


def test_streamed_static_binarization_is_fixed_per_image(monkeypatch):
    monkeypatch.setenv(data_lib.STREAM_BYTES_VARIABLE, "1")  # stream valid and test too
    first = data_lib.load_dataset("fashion_mnist", limit=300, binarize="static", seed=3,
                                  streaming="stream")
    longer = data_lib.load_dataset("fashion_mnist", limit=500, binarize="static", seed=3,
                                   streaming="stream")
    gray = data_lib.load_dataset("fashion_mnist", limit=300)
    assert not first.test.in_memory
    images = np.concatenate(list(first.train.batches(128)))
    assert set(np.unique(images)) == {0.0, 1.0}
    np.testing.assert_array_equal(images, np.concatenate(list(first.train.batches(100))))
    # Keyed by the image, not by its position in a batch or the limit.
    np.testing.assert_array_equal(images, longer.train.head(300)[0])
    assert abs(images.mean() - gray.train.images.mean()) < 0.01
    assert set(np.unique(first.test.head(50)[0])) == {0.0, 1.0}


def test_streamed_dynamic_binarization_redraws_training_images_only():
    dataset = data_lib.load_dataset("fashion_mnist", limit=256, binarize="dynamic", seed=5,
                                    streaming="stream")
    assert len(np.unique(dataset.train.head(256)[0])) > 2  # gray: redrawn by the pipeline
    assert set(np.unique(dataset.valid.images)) == {0.0, 1.0}  # drawn once
    pipeline = dataset.train.pipeline(256, seed=5, binarize="dynamic", epochs=2)
    epoch_one, epoch_two = batches(pipeline)
    assert set(np.unique(epoch_one)) == {0.0, 1.0}
    assert 0.05 < np.mean(epoch_one != epoch_two) < 0.5


def test_auto_never_streams_idx_data(monkeypatch):
    monkeypatch.setenv(data_lib.STREAM_BYTES_VARIABLE, "1")
    assert data_lib.load_dataset("fashion_mnist", limit=100).train.in_memory


def test_stream_threshold_variable_must_be_a_number(monkeypatch):
    monkeypatch.setenv(data_lib.STREAM_BYTES_VARIABLE, "lots")
    with pytest.raises(DataError, match="HML_VAE_STREAM_BYTES='lots' is not a whole number"):
        data_lib.load_dataset("fashion_mnist", limit=100)
    monkeypatch.delenv(data_lib.STREAM_BYTES_VARIABLE)
    assert data_lib.stream_threshold() == data_lib.STREAM_BYTES > 0


def test_binarizing_after_loading_equals_binarizing_while_loading():
    gray = data_lib.load_dataset("fashion_mnist", limit=300)
    for mode in ("static", "dynamic"):
        loaded = data_lib.load_dataset("fashion_mnist", limit=300, binarize=mode, seed=7)
        later = gray.binarized(mode, seed=7)
        for name in ("train", "valid", "test"):
            np.testing.assert_array_equal(getattr(later, name).images,
                                          getattr(loaded, name).images)
    assert gray.binarized("none", 7) is gray
