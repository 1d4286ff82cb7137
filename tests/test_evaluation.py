"""Tests of hml_vae.evaluation's VAE estimators, checked against a model whose log p(x)
is exact (probabilistic PCA), and on extreme images."""

import numpy as np
import pytest

from hml_vae.evaluation import (
    LinearGaussianModel,
    active_units,
    amortization_gap,
    draw_epsilon,
    likelihood_terms,
    log_mean_exp,
    log_weights_function,
    sample_log_weights,
)
from hml_vae.families.vae import build_dense_vae

FASHION = (28, 28, 1)


@pytest.fixture(scope="module")
def linear_gaussian():
    # variance_scale=4: q(z|x) is 4 times too wide, so the ELBO sits well below log p(x).
    model = LinearGaussianModel.random(data_dim=20, latent_dim=3, sigma=0.5, seed=0,
                                       variance_scale=4.0)
    images = model.sample(200, seed=1)
    return model, images, model.exact_log_likelihood(images)


def test_exact_log_likelihood_matches_a_dense_gaussian_density():
    model = LinearGaussianModel.random(data_dim=4, latent_dim=2, sigma=0.3, seed=2)
    x = model.sample(3, seed=0).astype(np.float64)
    covariance = model.weights @ model.weights.T + 0.09 * np.eye(4)
    centered = x - model.bias
    quadratic = np.einsum("ni,ij,nj->n", centered, np.linalg.inv(covariance), centered)
    expected = -0.5 * (quadratic + np.log(np.linalg.det(2 * np.pi * covariance)))
    np.testing.assert_allclose(model.exact_log_likelihood(x), expected, rtol=1e-8)


def test_elbo_below_iwae_below_exact_log_likelihood(linear_gaussian):
    model, images, exact = linear_gaussian
    terms = likelihood_terms(model, images, iwae_samples=100, seed=0)
    elbo, iwae = -terms["neg_elbo"].mean(), -terms["nll_iwae"].mean()
    # Monte-Carlo error of the means over 200 images is ~0.01 nats here; the gaps are larger.
    assert elbo < iwae - 1.0
    assert iwae <= exact.mean() + 0.05


def test_iwae_approaches_exact_log_likelihood_as_samples_grow(linear_gaussian):
    model, images, exact = linear_gaussian
    gaps = [
        exact.mean() + likelihood_terms(model, images, iwae_samples=k, seed=0)["nll_iwae"].mean()
        for k in (1, 10, 100, 1000)
    ]
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:], strict=False))
    assert abs(gaps[-1]) < 0.05


def test_iwae_with_one_sample_is_an_elbo_estimate(linear_gaussian):
    model, images, _ = linear_gaussian
    terms = likelihood_terms(model, images, iwae_samples=1, seed=0)
    # One sample: −log w is an unbiased estimate of −ELBO (same mean, up to MC error).
    assert abs(terms["nll_iwae"].mean() - terms["neg_elbo"].mean()) < 0.3


def test_sample_log_weights_chunking_does_not_change_the_numbers(linear_gaussian):
    model, images, _ = linear_gaussian
    z_mean, z_log_var = model.posterior(images[:10])
    epsilon = draw_epsilon(12, 10, 3, seed=0)
    whole = sample_log_weights(model, images[:10], z_mean, z_log_var, epsilon)
    chunked = sample_log_weights(model, images[:10], z_mean, z_log_var, epsilon,
                                 max_chunk_elements=10 * 20 * 5)  # 5 samples per call
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-6)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_vae():
    models = build_dense_vae(FASHION, (8,), latent_dim=2, seed=0)
    images = (np.random.default_rng(0).random((7, *FASHION)) < 0.3).astype(np.float32)
    return models, images


def reference_terms(models, images, epsilon):
    """−ELBO terms and IWAE written out in NumPy float64 from the decoder's logits: what
    likelihood_terms must compute for one batch with these draws (K, N, latent_dim)."""
    epsilon = np.asarray(epsilon, np.float64)
    z_mean, z_log_var = (np.asarray(value, np.float64) for value in models.posterior(images))
    z = z_mean + np.exp(0.5 * z_log_var) * epsilon  # (K, N, L)
    samples, count, latent_dim = z.shape
    logits = np.asarray(models.decoder(z.reshape(-1, latent_dim).astype(np.float32)),
                        np.float64).reshape(samples, count, -1)
    x = images.reshape(1, count, -1).astype(np.float64)
    log_px_z = -np.sum(np.logaddexp(0.0, logits) - x * logits, axis=-1)  # (K, N)
    log_prior = -0.5 * np.sum(np.log(2 * np.pi) + z**2, axis=-1)
    log_posterior = -0.5 * np.sum(np.log(2 * np.pi) + z_log_var
                                  + (z - z_mean) ** 2 / np.exp(z_log_var), axis=-1)
    log_weights = log_px_z + log_prior - log_posterior
    largest = log_weights.max(axis=0)
    nll_iwae = -(largest + np.log(np.mean(np.exp(log_weights - largest), axis=0)))
    return {"reconstruction_nll": -log_px_z.mean(axis=0), "nll_iwae": nll_iwae}


def test_likelihood_terms_of_a_vae_match_a_numpy_reference(tiny_vae):
    models, images = tiny_vae
    terms = likelihood_terms(models, images, iwae_samples=50, seed=3)
    # One batch, so its draws are the stream named by its first image (0).
    expected = reference_terms(models, images, draw_epsilon(50, len(images), 2, seed=3))
    for key, values in expected.items():
        np.testing.assert_allclose(terms[key], values, rtol=1e-5, err_msg=key)


def test_likelihood_terms_of_a_gaussian_vae_on_colour_images_match_numpy():
    # A Gaussian decoder on (20, 24, 3) images: log p(x|z) sums over all H·W·C values.
    shape = (20, 24, 3)
    models = build_dense_vae(shape, (8,), latent_dim=2, likelihood="gaussian",
                             gaussian_sigma=0.5, seed=0)
    images = np.random.default_rng(4).random((5, *shape)).astype(np.float32)
    terms = likelihood_terms(models, images, iwae_samples=6, seed=2)
    epsilon = np.asarray(draw_epsilon(6, len(images), 2, seed=2), np.float64)
    z_mean, z_log_var = (np.asarray(value, np.float64) for value in models.posterior(images))
    z = (z_mean + np.exp(0.5 * z_log_var) * epsilon).reshape(-1, 2)
    means = np.asarray(models.decoder(z.astype(np.float32)), np.float64).reshape(6, 5, -1)
    x = images.reshape(1, 5, -1).astype(np.float64)
    log_px_z = -0.5 * np.sum((x - means) ** 2 / 0.25 + np.log(2 * np.pi * 0.25), axis=-1)
    np.testing.assert_allclose(terms["reconstruction_nll"], -log_px_z.mean(axis=0), rtol=1e-5)


def test_likelihood_terms_same_seed_same_numbers_other_seed_other_numbers(tiny_vae):
    models, images = tiny_vae
    first = likelihood_terms(models, images, iwae_samples=20, seed=1)
    again = likelihood_terms(models, images, iwae_samples=20, seed=1)
    other = likelihood_terms(models, images, iwae_samples=20, seed=2)
    np.testing.assert_array_equal(first["nll_iwae"], again["nll_iwae"])
    assert not np.allclose(first["nll_iwae"], other["nll_iwae"])


def test_likelihood_terms_chunk_size_is_read_at_call_time_and_changes_nothing(
        tiny_vae, monkeypatch):
    from hml_vae import evaluation

    models, images = tiny_vae
    whole = likelihood_terms(models, images, iwae_samples=30, seed=0, batch_size=4)
    # 4 images × 784 pixels × 7 samples: 5 calls per batch (the last one smaller).
    monkeypatch.setattr(evaluation, "MAX_CHUNK_ELEMENTS", 4 * 784 * 7)
    assert evaluation.chunk_size(30, 4, 784) == 7
    chunked = likelihood_terms(models, images, iwae_samples=30, seed=0, batch_size=4)
    for key in whole:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-5, err_msg=key)


def test_compiled_log_weights_with_xla_equal_the_graph_version(tiny_vae):
    models, images = tiny_vae
    z_mean, z_log_var = models.posterior(images)
    epsilon = draw_epsilon(5, len(images), 2, seed=0)
    plain = sample_log_weights(models, images, z_mean, z_log_var, epsilon,
                               log_weights_fn=log_weights_function(models, jit_compile=False))
    fused = sample_log_weights(models, images, z_mean, z_log_var, epsilon,
                               log_weights_fn=log_weights_function(models, jit_compile=True))
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-5)


def test_log_mean_exp_is_stable_for_large_values():
    values = np.array([[1000.0, -1000.0], [1000.0, -1001.0]])
    np.testing.assert_allclose(log_mean_exp(values, axis=0),
                               [1000.0, -1000.0 + np.log((1 + np.exp(-1)) / 2)])


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_iwae_is_finite_for_all_black_and_all_white_images(fill):
    models = build_dense_vae(FASHION, (8,), latent_dim=2, seed=0)
    images = np.full((4, *FASHION), fill, np.float32)
    terms = likelihood_terms(models, images, iwae_samples=16, seed=0)
    for key, values in terms.items():
        assert np.all(np.isfinite(values)), key


def test_likelihood_terms_rejects_bad_sample_counts_and_nan(linear_gaussian):
    model, images, _ = linear_gaussian
    for samples in (0, -3):
        with pytest.raises(ValueError, match="positive number of samples"):
            likelihood_terms(model, images, iwae_samples=samples)
    with pytest.raises(ValueError, match="NaN"):
        likelihood_terms(model, np.full_like(images, np.nan), iwae_samples=2)


def test_active_units_counts_units_whose_mean_varies():
    rng = np.random.default_rng(0)
    z_mean = np.stack([rng.normal(size=500), 0.01 * rng.normal(size=500), np.zeros(500)], 1)
    assert active_units(z_mean) == 1


def test_amortization_gap_is_positive_for_a_suboptimal_encoder(linear_gaussian):
    model, images, _ = linear_gaussian
    result = amortization_gap(model, images[:50], steps=50, seed=0)
    assert result["amortization_steps"] == 50 and result["amortization_images"] == 50
    assert result["amortization_gap"] > 0.5
    np.testing.assert_allclose(
        result["amortization_gap"],
        result["amortization_elbo_after"] - result["amortization_elbo_before"], rtol=1e-4)


def test_bernoulli_numbers_are_computed_on_binarized_images():
    from types import SimpleNamespace

    from hml_vae.evaluation import evaluation_images

    gray = np.full((2, *FASHION), 0.5, np.float32)
    config = SimpleNamespace(likelihood="bernoulli", binarize="dynamic", seed=3)
    images, label = evaluation_images(config, gray)
    assert set(np.unique(images)) <= {0.0, 1.0} and label.startswith("static")
    config = SimpleNamespace(likelihood="gaussian", binarize="none", seed=3)
    images, label = evaluation_images(config, gray)
    assert images is gray and "gray" in label


def test_evaluate_vae_gaussian_reports_density_numbers_with_their_labels():
    from types import SimpleNamespace

    from hml_vae.config import make_config
    from hml_vae.evaluation import evaluate_vae

    config = make_config("vae", "tiny", likelihood="gaussian", binarize="none",
                         learned_sigma="global", gaussian_sigma=0.3, image_shape=FASHION)
    models = build_dense_vae(FASHION, (8,), latent_dim=2, likelihood="gaussian",
                             learned_sigma="global", gaussian_sigma=0.3, seed=0)
    images = np.random.default_rng(0).random((20, *FASHION)).astype(np.float32)
    data = SimpleNamespace(test=SimpleNamespace(images=images, in_memory=True))
    metrics = evaluate_vae(config, models, data, iwae_samples=4, amortization_images=5,
                           amortization_steps=3)
    assert metrics["iwae_samples"] == 4 and metrics["amortization_steps"] == 3
    assert "Gaussian density" in metrics["test_binarization"]
    assert "D/2 log(2πσ²)" in metrics["gaussian_nll_note"]
    assert "D = 784" in metrics["gaussian_nll_note"]
    assert "test_bce_loss_gray_pixels" not in metrics
    for key in ("test_neg_elbo", "test_nll_iwae", "test_kl", "amortization_gap"):
        assert np.isfinite(metrics[key]), key
