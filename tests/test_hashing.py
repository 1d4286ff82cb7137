"""The binary hashing autoencoder (hml_vae.families.hashing): hashes from codings, bucket
purity against its chance level, the wide noise layer, the hash-buckets figure, and a
trained run whose hashes group images of one class better than chance."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from hml_vae import plots
from hml_vae.config import make_config
from hml_vae.families.hashing import (
    CodingNoise,
    bit_string,
    bucket_purity,
    build_hashing,
    chance_purity,
    codes_to_hashes,
    hashing_metrics,
    image_hashes,
    most_common_hashes,
)

FASHION = (28, 28, 1)
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")


def test_codings_round_to_bits_and_bit_k_weighs_two_to_the_k():
    codes = np.array([[0.96, 0.02, 0.91, 0.2], [0.4, 0.6, 0.7, 0.55], [0.0, 0.0, 0.0, 0.0]])
    # Bits (1, 0, 1, 0) -> 1 + 4; (0, 1, 1, 1) -> 2 + 4 + 8.
    np.testing.assert_array_equal(codes_to_hashes(codes), [5, 14, 0])
    assert bit_string(5, 4) == "0101" and bit_string(14, 16) == "0000000000001110"


def test_most_common_hashes_are_sorted_by_size_then_hash():
    hashes = np.array([7, 3, 3, 9, 7, 3, 9, 1])
    assert most_common_hashes(hashes, 3) == [(3, 3), (7, 2), (9, 2)]
    assert most_common_hashes(hashes, 10)[-1] == (1, 1)


def test_bucket_purity_by_hand_and_its_chance_level():
    hashes = np.array([1, 1, 1, 2, 2, 3])
    labels = np.array([0, 0, 1, 1, 1, 2])
    # Bucket 1 holds classes 0, 0, 1 (2 agree), bucket 2 holds 1, 1, bucket 3 holds 2.
    assert bucket_purity(hashes, labels) == pytest.approx(5 / 6)
    # One bucket for everything: purity is the largest class share, whatever the order.
    one_bucket = np.zeros(60, np.int64)
    classes = np.repeat([0, 1, 2], [30, 20, 10])
    assert bucket_purity(one_bucket, classes) == pytest.approx(0.5)
    assert chance_purity(one_bucket, classes) == pytest.approx(0.5)
    # Hashes that are the classes: pure, far above shuffled labels in the same buckets.
    assert bucket_purity(classes, classes) == 1.0
    assert chance_purity(classes, classes) < 0.6


def test_coding_noise_is_wide_gaussian_noise_in_training_only(tmp_path):
    layer = CodingNoise(15.0, seed=3)
    zeros = np.zeros((2000, 50), np.float32)
    noisy = np.asarray(layer(zeros, training=True))
    assert np.std(noisy) == pytest.approx(15.0, rel=0.02)
    assert abs(np.mean(noisy)) < 0.1
    np.testing.assert_array_equal(np.asarray(layer(zeros, training=False)), zeros)
    assert CodingNoise.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="positive"):
        CodingNoise(0.0)


def test_hashing_model_has_the_books_shape_and_saves_with_its_noise(tmp_path):
    models = build_hashing(FASHION, (100,), latent_dim=16, noise_stddev=15.0, seed=0)
    assert models.encoder.output_shape == (None, 16)
    assert models.encoder.get_layer("coding").activation.__name__ == "sigmoid"
    assert models.encoder.get_layer("noise").stddev == 15.0
    images = np.random.default_rng(0).random((8, *FASHION)).astype(np.float32)
    models.whole.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(np.asarray(restored(images)), np.asarray(models.whole(images)))
    config = make_config("hashing")
    assert (config.hidden, config.latent_dim, config.noise_stddev, config.epochs,
            config.learning_rate) == ((100,), 16, 15.0, 10, 5e-4)


class FixedCodings:
    """A bundle whose codings are given: hashes known in advance."""

    def __init__(self, codes):
        self.codes = np.asarray(codes, np.float32)

    def coding(self, images):
        return self.codes[: len(images)]


def test_metrics_and_the_hash_buckets_figure_show_the_most_common_hashes():
    # 30 images in 4 buckets of 12, 9, 6 and 3 images (hashes 1, 2, 3, 0 of 4 bits).
    sizes = {1: 12, 2: 9, 3: 6, 0: 3}
    hashes = np.concatenate([np.full(size, value) for value, size in sizes.items()])
    codes = ((hashes[:, None] >> np.arange(4)) & 1) * 0.98 + 0.01
    images = np.random.default_rng(1).random((30, *FASHION)).astype(np.float32)
    models = FixedCodings(codes)
    np.testing.assert_array_equal(image_hashes(models, images), hashes)
    config = make_config("hashing", "tiny", latent_dim=4, image_shape=FASHION)
    metrics = hashing_metrics(config, models, images)
    assert metrics == {"hash_bits": 4, "test_coding_near_binary": 1.0,
                       "test_distinct_hashes": 4, "test_largest_bucket_share": 12 / 30}
    context = plots.PlotContext(config=config, models=models, images=images, labels=None,
                                class_names=None, history={})
    figure = plots.FIGURES["hash_buckets"].draw(context)
    axes = figure.axes
    assert len(axes) == 4 * 8  # a row per hash, 8 columns
    shown = [sum(cell.axison for cell in axes[row * 8:(row + 1) * 8]) for row in range(4)]
    assert shown == [8, 8, 6, 3]  # the buckets' sizes, at most 8 per row, largest first
    labels = [axes[row * 8].get_ylabel() for row in range(4)]
    assert labels == ["0001\n12 images", "0010\n9 images", "0011\n6 images",
                      "0000\n3 images"]
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    assert pixels.std() > 20  # drawn images, not a blank page


@pytest.mark.slow
@pytest.mark.skipif(not DATA_DIR.is_dir(), reason="Fashion-MNIST is not installed")
def test_a_trained_hashing_model_groups_classes_better_than_chance(tmp_path):
    from hml_vae.training import train_and_evaluate

    # No figures: the t-SNE of the latent map would cost more than the training.
    config = make_config("hashing", "tiny", hidden=(64,), latent_dim=8, limit=2000,
                         epochs=3, batch_size=32, learning_rate=2e-3, make_plots=False)
    metrics = train_and_evaluate(config, tmp_path / "run")
    assert metrics["hash_bits"] == 8
    assert 1 < metrics["test_distinct_hashes"] <= 2 ** 8
    # The noise pushes the sigmoid coding to its ends: rounding changes it little.
    assert metrics["test_coding_near_binary"] > 0.5
    assert metrics["test_bucket_purity"] > metrics["test_bucket_purity_chance"] + 0.1, metrics
