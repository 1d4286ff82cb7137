"""Numbers that describe a trained model on held-out data.

Autoencoders: mean squared error per pixel (HOML's number), on validation and test images;
each family adds its own numbers (``Family.metrics``: how well a denoising model cleans
noisy test images, how sparse a sparse model's coding is).
Variational autoencoders: −ELBO and its two terms, the importance-weighted estimate of
−log p(x), active units and the amortization gap, in nats per image; plus a linear-Gaussian
model whose log p(x) is exact, to check the estimators.
"""

from __future__ import annotations

import numpy as np


def mse_per_pixel(model, images: np.ndarray, batch_size: int = 256) -> float:
    """Mean over images and pixels of (reconstruction - image)^2, deterministic."""
    reconstructions = model.predict(images, batch_size=batch_size, verbose=0)
    reconstructions = np.asarray(reconstructions).reshape(images.shape)
    return float(np.mean((reconstructions - images) ** 2))


def evaluate_autoencoder(models, data, batch_size: int = 256) -> dict[str, float]:
    """HOML's reconstruction error on the validation and test splits."""
    test_images = split_images(data.test)
    return {
        "valid_mse_per_pixel": mse_per_pixel(models.whole, split_images(data.valid),
                                             batch_size),
        "test_mse_per_pixel": mse_per_pixel(models.whole, test_images, batch_size),
        "test_images": len(test_images),
    }


# Images a streamed split is evaluated on: the numbers of metrics.json come from one pass
# over arrays in memory.
MAX_EVALUATION_IMAGES = 10_000


def split_images(split) -> np.ndarray:
    """A split's images as an array (a streamed split's first MAX_EVALUATION_IMAGES)."""
    if split.in_memory:
        return split.images
    return split.head(min(len(split), MAX_EVALUATION_IMAGES))[0]


def split_labels(split) -> np.ndarray | None:
    """The labels of :func:`split_images`' images, or None when the data set has none."""
    if split.in_memory:
        return getattr(split, "labels", None)
    return split.head(min(len(split), MAX_EVALUATION_IMAGES))[1]


def evaluate(config, models, data, gray=None) -> dict:
    """Every number of ``metrics.json``: the reconstruction error (autoencoders) or the
    likelihood numbers (VAEs), then the family's own.

    Args:
        data: the data set as the run trained on it (binarized when the run binarizes).
        gray: the same data set with gray pixels, for the numbers named "gray" and HOML's
            MSE of a VAE (default ``data``: a run that does not binarize).
    """
    if models.variational:
        metrics = evaluate_vae(config, models, data, gray=gray)
    else:
        metrics = evaluate_autoencoder(models, data)
    test_images = split_images(data.test)
    metrics.update(config.family.metrics(config, models, test_images))
    labels = split_labels(data.test)
    if labels is not None:
        metrics.update(config.family.label_metrics(config, models, test_images, labels))
    return metrics


# --- Variational autoencoders -------------------------------------------------------------
#
# All numbers are in nats per image (docs/vae.md, eq. 13). The functions take any latent-variable
# model with two methods, which both VAEModels and LinearGaussianModel provide:
#   posterior(images) -> (z_mean, z_log_var) NumPy arrays (N, latent_dim) of q(z|x);
#   log_likelihood(images, z) -> (N,) tensor log p(x|z), written with keras.ops so that
#   it can be traced into a compiled TensorFlow function.

# Elements (samples × images × pixels) of one decoder call in the importance-weighted
# estimate: ~16 MB of float32 per tensor, whatever K is.
MAX_CHUNK_ELEMENTS = 1 << 22
ACTIVE_UNIT_THRESHOLD = 0.01


def check_sample_count(name: str, count) -> int:
    if not isinstance(count, (int, np.integer)) or count <= 0:
        raise ValueError(
            f"{name} must be a positive number of samples, got {count!r}; e.g. "
            f"--iwae-samples 100 (1000 for published numbers)."
        )
    return int(count)


def log_mean_exp(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """log(mean(exp(values))) along ``axis`` without overflow (log-sum-exp)."""
    values = np.asarray(values, dtype=np.float64)
    largest = np.max(values, axis=axis, keepdims=True)
    largest = np.where(np.isfinite(largest), largest, 0.0)
    summed = np.log(np.mean(np.exp(values - largest), axis=axis))
    return summed + np.squeeze(largest, axis=axis)


def _tile(images: np.ndarray, count: int) -> np.ndarray:
    """(N, ...) -> (count·N, ...): the images repeated once per sample, sample-major."""
    return np.broadcast_to(images, (count, *images.shape)).reshape(-1, *images.shape[1:])


def draw_epsilon(samples: int, count: int, latent_dim: int, seed: int, stream: int = 0):
    """ε ~ N(0, I) of shape (K, N, latent_dim), float32, from TensorFlow's stateless
    generator: the same (seed, stream) gives the same numbers, on the device that uses
    them (no NumPy draw copied in per chunk)."""
    import tensorflow as tf

    return tf.random.stateless_normal((samples, count, latent_dim),
                                      seed=tf.constant([seed, stream], tf.int64))


def log_weights_function(model, jit_compile: bool = False):
    """A compiled ``(images, z_mean, z_log_var, epsilon) -> (log p(x|z), log w)``.

    For ε (C, N, L): z = μ + σ·ε, then log p(x|z) from ``model.log_likelihood`` and
    log w = log p(x|z) + log p(z) − log q(z|x), both (C, N) float32. One ``tf.function``
    per model, traced once per chunk shape, so a chunk runs as one graph: no eager op
    dispatch, no host round trip, Grappler fuses the decoder's matmuls with their bias.

    ``jit_compile=True`` compiles it with XLA instead, which fuses the likelihood's
    elementwise terms and its sum over pixels into one loop. It is off by default because
    on the 2-core AVX-512 CPU of benchmarks/evaluation_speed.py XLA's matrix multiply is
    slower than TensorFlow's by more than the fusion saves (dense 784-400-20 VAE, 5,000
    codings per call: ~5.9 µs against ~5.1 µs per coding); measure before turning it on
    elsewhere (a GPU, for one).
    """
    import tensorflow as tf

    from hml_vae import losses

    @tf.function(jit_compile=jit_compile, autograph=False)
    def chunk_log_weights(images, z_mean, z_log_var, epsilon):
        size, count, latent_dim = epsilon.shape
        z = z_mean + tf.exp(0.5 * z_log_var) * epsilon  # (C, N, L)
        tiled = tf.broadcast_to(images, (size, *images.shape))  # (C, N, ...)
        log_px_z = model.log_likelihood(tf.reshape(tiled, (size * count, *images.shape[1:])),
                                        tf.reshape(z, (size * count, latent_dim)))
        log_px_z = tf.reshape(log_px_z, (size, count))
        log_weights = (log_px_z + losses.standard_normal_log_density(z)
                       - losses.gaussian_log_density(z, z_mean, z_log_var))
        return log_px_z, log_weights

    return chunk_log_weights


def chunk_size(samples: int, count: int, pixels: int,
               max_chunk_elements: int | None = None) -> int:
    """Samples per decoder call so that one call holds at most ``max_chunk_elements``
    pixel values (at least one sample)."""
    limit = MAX_CHUNK_ELEMENTS if max_chunk_elements is None else max_chunk_elements
    return max(1, min(samples, limit // max(1, count * pixels)))


def sample_log_weights(model, images, z_mean, z_log_var, epsilon,
                       max_chunk_elements: int | None = None, log_weights_fn=None):
    """log p(x|z_k) and log w_k = log p(x, z_k) − log q(z_k|x) for z_k = μ + σ·ε_k.

    Vectorised over samples: each compiled call takes ``chunk × N`` codings, with the chunk
    sized so a call holds at most ``max_chunk_elements`` pixel values (default
    ``MAX_CHUNK_ELEMENTS``, read at call time). The chunking does not change the draws.

    Args:
        model: see the section comment.
        images: (N, ...) float32.
        z_mean, z_log_var: (N, latent_dim) of q(z|x).
        epsilon: (K, N, latent_dim) standard normal draws (:func:`draw_epsilon`).
        log_weights_fn: a :func:`log_weights_function` of ``model`` to reuse its traces.

    Returns:
        (log_likelihoods, log_weights), each a float64 array (K, N).
    """
    import tensorflow as tf

    log_weights_fn = log_weights_fn or log_weights_function(model)
    images = tf.constant(images, tf.float32)
    z_mean = tf.constant(z_mean, tf.float32)
    z_log_var = tf.constant(z_log_var, tf.float32)
    samples, count = int(epsilon.shape[0]), int(epsilon.shape[1])
    pixels = int(np.prod(images.shape[1:]))
    chunk = chunk_size(samples, count, pixels, max_chunk_elements)
    log_likelihoods, log_weights = [], []
    for start in range(0, samples, chunk):
        log_px_z, log_w = log_weights_fn(images, z_mean, z_log_var, epsilon[start:start + chunk])
        log_likelihoods.append(log_px_z.numpy())
        log_weights.append(log_w.numpy())
    # The mean and log-sum-exp over K are taken in float64 by the caller.
    return (np.concatenate(log_likelihoods).astype(np.float64),
            np.concatenate(log_weights).astype(np.float64))


def likelihood_terms(model, images, iwae_samples: int = 100, seed: int = 0,
                     batch_size: int = 500) -> dict[str, np.ndarray]:
    """Per-image terms of −ELBO and the importance-weighted estimate of −log p(x).

    With K samples z_k ~ q(z|x): the reconstruction NLL is −mean_k log p(x|z_k), the KL is
    closed-form (docs/vae.md, eq. 10), and ``−log p(x) ≈ −log (1/K) Σ_k p(x, z_k)/q(z_k|x)``
    (log-sum-exp), which is ≥ −ELBO in expectation and tends to −log p(x) as K grows.

    Args:
        model: see the section comment.
        images: (N, ...) float32 (binary for a Bernoulli decoder to get likelihoods).
        iwae_samples: K ≥ 1.
        seed: for ε; the same seed (and batch size) gives the same numbers.
        batch_size: images per encoder pass and per importance-sampling batch.

    Returns:
        Arrays (N,) in nats: ``reconstruction_nll``, ``kl``, ``neg_elbo``, ``nll_iwae``.
    """
    from hml_vae import losses

    iwae_samples = check_sample_count("iwae_samples", iwae_samples)
    images = np.asarray(images, dtype=np.float32)
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or infinite values; clean the data first.")
    log_weights_fn = log_weights_function(model)  # traced once, reused by every batch
    parts = {"reconstruction_nll": [], "kl": [], "nll_iwae": []}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        z_mean, z_log_var = (np.asarray(value, np.float32) for value in model.posterior(batch))
        # One stream per batch, named by its first image: batches draw independent ε.
        epsilon = draw_epsilon(iwae_samples, *z_mean.shape, seed=seed, stream=start)
        log_px_z, log_weights = sample_log_weights(
            model, batch, z_mean, z_log_var, epsilon, log_weights_fn=log_weights_fn
        )
        parts["reconstruction_nll"].append(-log_px_z.mean(axis=0))
        parts["kl"].append(np.asarray(losses.kl_divergence(z_mean, z_log_var), np.float64))
        parts["nll_iwae"].append(-log_mean_exp(log_weights, axis=0))
    terms = {key: np.concatenate(values) for key, values in parts.items()}
    terms["neg_elbo"] = terms["reconstruction_nll"] + terms["kl"]
    return terms


def active_units(z_mean: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent units whose posterior mean varies across the data: Cov_x(E_q[z_u]) > threshold.

    Args:
        z_mean: (N, latent_dim) posterior means E_q[z] of N images.

    Returns:
        The number of active units (Burda et al. 2016's measure).
    """
    return int(np.sum(np.var(np.asarray(z_mean, np.float64), axis=0) > threshold))


def amortization_gap(model, images, steps: int = 100, learning_rate: float = 0.05,
                     samples: int = 16, eval_samples: int = 64, seed: int = 0) -> dict:
    """How much ELBO the encoder leaves on the table: per-image refinement of q(z|x).

    Starting from the encoder's (μ_i, log σ²_i), each image's own variational parameters
    are refined by gradient ascent on its ELBO with the decoder fixed: EM's E-step done by
    optimization instead of amortized inference (docs/vae.md, eq. 8). The ascent uses Adam with a
    learning rate decaying to a tenth, on a fixed set of ``samples`` reparameterized draws
    (a deterministic objective, so Adam settles instead of jittering on gradient noise).
    The ELBO before and after is estimated on other, common draws (``eval_samples``), so
    the gain is neither overfitted to the ascent's draws nor drowned in Monte-Carlo noise.

    Returns:
        ``amortization_gap`` (mean ELBO gain, nats/image; positive means the encoder is
        suboptimal), ``amortization_steps``, ``amortization_images``,
        ``amortization_elbo_before`` / ``_after`` (mean ELBO, nats/image).
    """
    import keras
    import tensorflow as tf

    from hml_vae import losses

    steps = check_sample_count("amortization steps", steps)
    images = np.asarray(images, dtype=np.float32)
    count = len(images)
    z_mean, z_log_var = (np.asarray(value, np.float32) for value in model.posterior(images))
    latent_dim = z_mean.shape[1]
    rng = np.random.default_rng(seed)
    eval_epsilon = tf.constant(rng.standard_normal((eval_samples, count, latent_dim)),
                               tf.float32)
    tiled = {size: tf.constant(_tile(images, size)) for size in {samples, eval_samples}}

    def elbo(mean, log_var, epsilon):  # (N,) ELBO with the draws epsilon (S, N, L)
        size = epsilon.shape[0]
        z = mean + tf.exp(0.5 * log_var) * epsilon
        log_px_z = model.log_likelihood(tiled[size], tf.reshape(z, (size * count, latent_dim)))
        log_px_z = tf.reduce_mean(tf.reshape(log_px_z, (size, count)), axis=0)
        return log_px_z - losses.kl_divergence(mean, log_var)

    mean = keras.Variable(z_mean, name="refined_z_mean")
    log_var = keras.Variable(z_log_var, name="refined_z_log_var")
    schedule = keras.optimizers.schedules.ExponentialDecay(learning_rate, steps, 0.1)
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.build([mean, log_var])  # create its slots outside the tf.function

    @tf.function(autograph=False)  # plain tensor code; no need to convert Keras internals
    def step(epsilon):
        with tf.GradientTape() as tape:
            # Images are independent: the sum's gradient is each image's own gradient.
            loss = -tf.reduce_sum(elbo(mean, log_var, epsilon))
        gradients = tape.gradient(loss, [mean, log_var])
        optimizer.apply(gradients, [mean, log_var])

    before = np.asarray(elbo(tf.constant(z_mean), tf.constant(z_log_var), eval_epsilon))
    ascent_epsilon = tf.constant(rng.standard_normal((samples, count, latent_dim)), tf.float32)
    for _ in range(steps):
        step(ascent_epsilon)
    after = np.asarray(elbo(mean.value, log_var.value, eval_epsilon))
    return {
        "amortization_gap": float(np.mean(after - before)),
        "amortization_steps": steps,
        "amortization_images": count,
        "amortization_elbo_before": float(np.mean(before)),
        "amortization_elbo_after": float(np.mean(after)),
    }


def evaluation_images(config, gray: np.ndarray,
                      binary: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The test images a VAE's likelihood numbers are computed on, and how they were made.

    A Bernoulli decoder defines a normalized likelihood only on binary images, so gray
    images are binarized once with the run's seed. A run that binarizes holds that draw
    as its test split already (``binary``, from ``hml_vae.data.Dataset.binarized``; drawn
    here when not given). A Gaussian decoder of gray images is evaluated on them as they
    are (a density over pixel values).

    Args:
        gray: (N, H, W, C) test images with gray pixels.
        binary: the same images as the run's binarized test split, if it binarizes.
    """
    from hml_vae.data import binarize_static

    if config.binarize in ("static", "dynamic"):
        images = binarize_static(gray, config.seed) if binary is None else binary
        if config.binarize == "static":
            return images, f"static (seed {config.seed}, as in training)"
        return images, (f"static (seed {config.seed}, drawn once for evaluation; trained on "
                        f"dynamically binarized images)")
    if config.likelihood == "gaussian":
        return gray, "none (gray pixels: Gaussian density)"
    return binarize_static(gray, config.seed), (
        f"static (seed {config.seed}, drawn once for evaluation; trained on gray pixels)")


def evaluate_vae(config, models, data, iwae_samples: int | None = None,
                 amortization_images: int = 100, amortization_steps: int = 100,
                 seed: int = 0, gray=None) -> dict:
    """The VAE's numbers on the test split, in nats per image, for ``metrics.json``.

    Args:
        config: the run's config (likelihood, binarization, seed, default K).
        models: :class:`hml_vae.families.VAEModels`.
        data: :class:`hml_vae.data.Dataset`.
        iwae_samples: K (default ``config.iwae_samples``).
        amortization_images: how many test images the amortization gap refines.
        amortization_steps: gradient steps per image.
        seed: for the Monte-Carlo draws.
        gray: the data set with gray pixels (default ``data``, which must then be gray:
            a run that binarizes holds binary test images in ``data``).

    Returns:
        ``test_neg_elbo``, ``test_reconstruction_nll``, ``test_kl``, ``test_nll_iwae`` with
        ``iwae_samples``, ``active_units``, the amortization gap, ``test_binarization`` and
        HOML's ``test_mse_per_pixel`` (deterministic reconstruction of the gray images).
    """
    from hml_vae import losses
    from hml_vae.families.bundle import check_images

    iwae_samples = check_sample_count("iwae_samples", iwae_samples or config.iwae_samples)
    # Likelihoods on the binary images, HOML's MSE and the BCE loss on the gray ones: a
    # binarized test split scores reconstructions against 0/1 pixels, worse than a
    # constant mean image would.
    gray = check_images(split_images((data if gray is None else gray).test), config.likelihood)
    binary = split_images(data.test) if config.binarize in ("static", "dynamic") else None
    if binary is not None and binary.shape != gray.shape:
        raise ValueError(f"the binarized test images {binary.shape} are not the gray ones "
                         f"{gray.shape}; pass the same data set, gray and binarized.")
    images, binarization = evaluation_images(config, gray, binary)
    terms = likelihood_terms(models, images, iwae_samples, seed)
    z_mean, _ = models.posterior(images)
    metrics = {
        "units": f"nats per image (sums over the {gray[0].size} pixel values of an image, "
                 f"means over test images)",
        "likelihood": config.likelihood,
        "test_binarization": binarization,
        "test_images": len(images),
        "test_neg_elbo": float(np.mean(terms["neg_elbo"])),
        "test_reconstruction_nll": float(np.mean(terms["reconstruction_nll"])),
        "test_kl": float(np.mean(terms["kl"])),
        "test_nll_iwae": float(np.mean(terms["nll_iwae"])),
        "iwae_samples": iwae_samples,
        "active_units": active_units(z_mean),
        "latent_dim": models.latent_dim,
        "test_mse_per_pixel": float(np.mean((models.reconstruct(gray) - gray) ** 2)),
    }
    if config.likelihood == "gaussian":
        metrics["gaussian_nll_note"] = (
            f"includes the D/2 log(2πσ²) constant (a log-density, D = {gray[0].size}); the "
            f"σ = 1 loss without it (docs/vae.md) is {gray[0].size / 2 * np.log(2 * np.pi):.1f}"
            f" nats lower"
        )
    if config.likelihood == "bernoulli":
        # Binary cross-entropy on gray pixels is a loss, not a log-likelihood.
        z_gray, _ = models.posterior(gray)
        logits = np.concatenate([np.asarray(models.decoder(z_gray[start : start + 256]))
                                 for start in range(0, len(z_gray), 256)])
        metrics["test_bce_loss_gray_pixels"] = float(np.mean(losses.bernoulli_nll(gray, logits)))
    subset = images[:amortization_images]
    metrics.update(amortization_gap(models, subset, steps=amortization_steps, seed=seed))
    return metrics


# --- An exactly solvable check: probabilistic PCA ---------------------------------------


class LinearGaussianModel:
    """Linear-Gaussian latent model (probabilistic PCA) with a closed-form log p(x).

    ``z ~ N(0, I_d)``, ``x | z ~ N(W z + b, σ² I_D)``, so ``x ~ N(b, W Wᵀ + σ² I)``. Its
    ``posterior`` is the mean-field approximation of the exact Gaussian posterior (exact
    means, diagonal of the exact covariance), so the ELBO is strictly below log p(x) and
    the importance-weighted estimate has room to close the gap. Used by the tests to
    check ELBO ≤ IWAE ≤ exact and that IWAE → exact as K grows.

    Example:
        >>> model = LinearGaussianModel.random(data_dim=20, latent_dim=3, sigma=0.5)
        >>> images = model.sample(100, seed=1)
        >>> model.exact_log_likelihood(images).shape
        (100,)
    """

    def __init__(self, weights: np.ndarray, bias: np.ndarray, sigma: float,
                 variance_scale: float = 1.0):
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}.")
        if not variance_scale > 0:
            raise ValueError(f"variance_scale must be > 0, got {variance_scale}.")
        # Multiplies the posterior variances: > 1 makes q(z|x) a deliberately worse
        # proposal, to show the importance-weighted estimate closing a wide gap.
        self.variance_scale = float(variance_scale)
        self.weights = np.asarray(weights, np.float64)  # (D, d)
        self.bias = np.asarray(bias, np.float64)  # (D,)
        self.sigma = float(sigma)
        data_dim, latent_dim = self.weights.shape
        # Exact posterior: covariance σ² M⁻¹ and mean M⁻¹ Wᵀ (x − b), M = WᵀW + σ² I.
        precision_matrix = self.weights.T @ self.weights + self.sigma**2 * np.eye(latent_dim)
        self._m_inverse = np.linalg.inv(precision_matrix)
        self.posterior_covariance = self.sigma**2 * self._m_inverse

    @classmethod
    def random(cls, data_dim: int = 20, latent_dim: int = 3, sigma: float = 0.5,
               seed: int = 0, variance_scale: float = 1.0) -> LinearGaussianModel:
        rng = np.random.default_rng(seed)
        return cls(rng.standard_normal((data_dim, latent_dim)),
                   rng.standard_normal(data_dim), sigma, variance_scale)

    def sample(self, count: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((count, self.weights.shape[1]))
        noise = self.sigma * rng.standard_normal((count, self.weights.shape[0]))
        return (z @ self.weights.T + self.bias + noise).astype(np.float32)

    def posterior(self, images):
        centered = np.asarray(images, np.float64) - self.bias
        z_mean = centered @ self.weights @ self._m_inverse.T
        log_var = np.log(self.variance_scale * np.diag(self.posterior_covariance))
        z_log_var = np.broadcast_to(log_var, z_mean.shape)
        return z_mean.astype(np.float32), z_log_var.astype(np.float32)

    def log_likelihood(self, images, z):
        from keras import ops

        from hml_vae import losses

        weights = ops.convert_to_tensor(self.weights.T, dtype="float32")  # (d, D)
        means = ops.matmul(ops.convert_to_tensor(z, dtype="float32"), weights) + self.bias
        return -losses.gaussian_nll(images, means, np.log(self.sigma))

    def exact_log_likelihood(self, images) -> np.ndarray:
        """(N,) log N(x; b, W Wᵀ + σ² I) in float64 (Cholesky)."""
        centered = np.asarray(images, np.float64) - self.bias
        data_dim = self.weights.shape[0]
        covariance = self.weights @ self.weights.T + self.sigma**2 * np.eye(data_dim)
        cholesky = np.linalg.cholesky(covariance)
        solved = np.linalg.solve(cholesky, centered.T)  # (D, N)
        log_det = 2.0 * np.sum(np.log(np.diag(cholesky)))
        return -0.5 * (np.sum(solved**2, axis=0) + log_det + data_dim * np.log(2 * np.pi))
