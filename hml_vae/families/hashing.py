"""Binary hashing autoencoder (HOML ch. 17's extra material, "Hashing Using a Binary
Autoencoder"): the stacked model whose 16-unit coding is a sigmoid layer with heavy
Gaussian noise just before it, in training only.

The noise (σ = 15) drowns any small input of the coding layer, so the encoder learns to
feed it large ones, and the sigmoid then outputs values near 0 or 1. Rounded, a coding is
a 16-bit "semantic hash": images that look alike should share one, so a hash can name the
server (or bucket) that holds all images like it.

Example:
    >>> models = build_hashing((28, 28, 1), hidden=(100,), latent_dim=16, seed=0)
    >>> hashes = image_hashes(models, images)       # (N,) integers below 2**16
    >>> bit_string(hashes[0], 16)
    '0110100100011011'
"""

from __future__ import annotations

import collections

import keras
import numpy as np

from hml_vae.families import blocks
from hml_vae.families.bundle import AutoencoderModels
from hml_vae.families.family import COMMON_FIGURES, register
from hml_vae.families.stacked import TINY_DENSE, check_dense, dense_family

# Bucket purity against chance: label permutations averaged for the chance level.
CHANCE_PERMUTATIONS = 20


@keras.saving.register_keras_serializable(package="hml_vae")
class CodingNoise(keras.layers.GaussianNoise):
    """``keras.layers.GaussianNoise`` with any σ: N(0, stddev²) added in training only.

    Keras 3's GaussianNoise refuses a standard deviation above 1, which tf.keras 2 (the
    book's) accepted, and the book's hashing model needs σ = 15. This is the same layer
    without that check (so code that strips noise layers, like a classifier built on the
    encoder, treats it as one).

    Args:
        stddev: standard deviation of the noise (> 0).
        seed: seeds the layer's own random state.
    """

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        if not stddev > 0:
            raise ValueError(f"noise stddev must be positive, got {stddev!r}; HOML uses 15.")
        # GaussianNoise.__init__ would reject σ > 1: set up what it sets up, σ unchecked.
        keras.layers.Layer.__init__(self, **kwargs)
        self.stddev = float(stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self._build_at_init()


def build_hashing(image_shape, hidden=(100,), latent_dim: int = 16, noise_stddev: float = 15.0,
                  seed: int | None = None, activation: str = "relu") -> AutoencoderModels:
    """HOML's hashing autoencoder: flatten -> hidden ReLU layers -> GaussianNoise -> a
    sigmoid coding of ``latent_dim`` bits (named ``coding``); the decoder mirrors the
    hidden layers to a linear output, as in the stacked model.

    Args:
        noise_stddev: σ of the noise before the coding (HOML: 15); active in training only.
        seed: seeds the noise layer's own random state.
    """
    hidden = tuple(hidden)
    blocks.check_undercomplete("hashing", (*hidden, latent_dim), blocks.pixel_count(image_shape))
    images = keras.Input(shape=image_shape, name="images")
    x = keras.layers.Flatten(name="flatten")(images)  # (B, H, W, C) -> (B, H·W·C)
    x = blocks.apply(blocks.dense_layers(hidden, activation, "encoder_dense"), x)
    x = CodingNoise(noise_stddev, seed=seed, name="noise")(x)
    coding = keras.layers.Dense(latent_dim, activation="sigmoid", name="coding")(x)
    encoder = keras.Model(images, coding, name="encoder")
    return blocks.assemble(encoder, blocks.dense_decoder(image_shape, hidden, latent_dim,
                                                         activation))


def codes_to_hashes(codes: np.ndarray) -> np.ndarray:
    """(N, bits) sigmoid codings -> (N,) int64 hashes: each coding rounded to 0/1, bit k
    weighted 2**k (the notebook's convention)."""
    bits = np.rint(np.asarray(codes)).astype(np.int64)  # (N, bits) of 0 and 1
    return bits @ (1 << np.arange(bits.shape[1], dtype=np.int64))


def image_hashes(models, images: np.ndarray) -> np.ndarray:
    """(N,) hashes of ``images`` (the deterministic coding, no noise)."""
    return codes_to_hashes(models.coding(images))


def bit_string(image_hash: int, bits: int) -> str:
    """A hash as its bits, most significant first: 5, 4 -> '0101'."""
    return format(int(image_hash), f"0{bits}b")


def most_common_hashes(hashes: np.ndarray, count: int) -> list[tuple[int, int]]:
    """The ``count`` most frequent hashes with their sizes, largest first (ties: the
    smaller hash first, so the order does not depend on the images' order)."""
    sizes = collections.Counter(hashes.tolist())
    return sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:count]


def bucket_purity(hashes: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose class is their bucket's most common class (buckets = images
    with one hash): 1 when every bucket holds one class."""
    hashes, labels = np.asarray(hashes), np.asarray(labels)
    agreeing = 0
    for image_hash in np.unique(hashes):
        agreeing += np.bincount(labels[hashes == image_hash]).max()
    return agreeing / len(hashes)


def chance_purity(hashes: np.ndarray, labels: np.ndarray, seed: int = 0,
                  permutations: int = CHANCE_PERMUTATIONS) -> float:
    """The purity of the same bucket sizes with the labels shuffled: what hashes that know
    nothing of the classes would score (small buckets are pure by chance alone)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([bucket_purity(hashes, rng.permutation(labels))
                          for _ in range(permutations)]))


def hashing_metrics(config, models, images: np.ndarray) -> dict:
    """How binary the codings are and how the test images spread over the hashes."""
    codes = np.asarray(models.coding(images))
    hashes = codes_to_hashes(codes)
    largest = most_common_hashes(hashes, 1)[0][1] if len(hashes) else 0
    return {
        "hash_bits": int(codes.shape[1]),
        # Coding values within 0.1 of 0 or 1: how little rounding changes them.
        "test_coding_near_binary": float(np.mean((codes < 0.1) | (codes > 0.9))),
        "test_distinct_hashes": int(len(np.unique(hashes))),
        "test_largest_bucket_share": largest / max(1, len(hashes)),
    }


def hashing_label_metrics(config, models, images: np.ndarray, labels: np.ndarray) -> dict:
    """Bucket purity of the test images' hashes against their classes, and its chance
    level (the same buckets, labels shuffled with the run's seed)."""
    hashes = image_hashes(models, images)
    return {"test_bucket_purity": float(bucket_purity(hashes, labels)),
            "test_bucket_purity_chance": chance_purity(hashes, labels, seed=config.seed)}


FAMILY = register(dense_family(
    name="hashing",
    summary="binary hashing: Dense(100), GaussianNoise(15), a 16-unit sigmoid coding rounded "
            "to a 16-bit hash",
    build=lambda config: build_hashing(blocks.require_image_shape(config), config.hidden,
                                       config.latent_dim, noise_stddev=config.noise_stddev,
                                       seed=config.seed),
    # The chapter's binary-hashing extra material (HOML's 2nd-edition notebook; the 3rd
    # edition's notebook has no hashing cell, so no printed number to compare with):
    # 784-100-[GaussianNoise(15)]-16 sigmoid, decoder 100-784 linear, MSE, Nadam at
    # learning rate 5e-4, 10 epochs, batch 32.
    presets={"default": {"hidden": (100,), "latent_dim": 16, "noise_stddev": 15.0,
                         "epochs": 10, "batch_size": 32, "optimizer": "nadam",
                         "learning_rate": 5e-4},
             "tiny": {**TINY_DENSE, "noise_stddev": 15.0}},
    options=("noise_stddev",),
    # Not XLA: the noise is drawn by stateless random ops, slow under XLA on CPU (as for
    # the denoising family's GaussianNoise, benchmarks/results/xla_by_family.md).
    xla=False,
    check=check_dense,
    describe=lambda config: (
        f"dense {blocks.pixel_count(config.image_shape)}-{'-'.join(map(str, config.hidden))}"
        f", GaussianNoise({config.noise_stddev:g}), {config.latent_dim}-bit sigmoid coding"),
    metrics=hashing_metrics,
    label_metrics=hashing_label_metrics,
    figures=(*COMMON_FIGURES, "hash_buckets"),
))
