"""Tests of hml_vae.evaluation's VAE estimators, checked against a model whose log p(x)
is exact (probabilistic PCA), and on extreme images."""

import numpy as np
import pytest

from hml_vae.evaluation import (
    LinearGaussianModel,
    active_units,
    amortization_gap,
    likelihood_terms,
    log_mean_exp,
    sample_log_weights,
)
from hml_vae.models.vae import build_dense_vae


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
    whole = sample_log_weights(model, images[:10], z_mean, z_log_var, 12,
                               np.random.default_rng(0))
    chunked = sample_log_weights(model, images[:10], z_mean, z_log_var, 12,
                                 np.random.default_rng(0), max_chunk_elements=10 * 20 * 5)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-6)


def test_log_mean_exp_is_stable_for_large_values():
    values = np.array([[1000.0, -1000.0], [1000.0, -1001.0]])
    np.testing.assert_allclose(log_mean_exp(values, axis=0),
                               [1000.0, -1000.0 + np.log((1 + np.exp(-1)) / 2)])


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_iwae_is_finite_for_all_black_and_all_white_images(fill):
    models = build_dense_vae((8,), latent_dim=2, seed=0)
    images = np.full((4, 28, 28), fill, np.float32)
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

    gray = np.full((2, 28, 28), 0.5, np.float32)
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
                         learned_sigma="global", gaussian_sigma=0.3)
    models = build_dense_vae((8,), latent_dim=2, likelihood="gaussian", learned_sigma="global",
                             gaussian_sigma=0.3, seed=0)
    images = np.random.default_rng(0).random((20, 28, 28)).astype(np.float32)
    data = SimpleNamespace(test=SimpleNamespace(images=images))
    metrics = evaluate_vae(config, models, data, iwae_samples=4, amortization_images=5,
                           amortization_steps=3)
    assert metrics["iwae_samples"] == 4 and metrics["amortization_steps"] == 3
    assert "Gaussian density" in metrics["test_binarization"]
    assert "784/2 log(2πσ²)" in metrics["gaussian_nll_note"]
    assert "test_bce_loss_gray_pixels" not in metrics
    for key in ("test_neg_elbo", "test_nll_iwae", "test_kl", "amortization_gap"):
        assert np.isfinite(metrics[key]), key
