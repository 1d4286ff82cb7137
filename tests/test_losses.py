"""Tests of hml_vae.losses against numbers computed by hand and Monte-Carlo estimates."""

import math

import numpy as np
import pytest

from hml_vae import losses


def test_kl_is_zero_when_posterior_is_the_prior():
    kl = np.asarray(losses.kl_divergence(np.zeros((3, 5)), np.zeros((3, 5))))
    np.testing.assert_allclose(kl, 0.0, atol=1e-7)


def test_kl_hand_computed_values():
    # μ = 1, σ² = 1: ½ μ² = 0.5 per dimension. μ = 0, σ² = e: ½ (e − 1 − 1).
    z_mean = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    z_log_var = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    expected = [1.0, 2 * 0.5 * (math.e - 2.0)]
    np.testing.assert_allclose(losses.kl_divergence(z_mean, z_log_var), expected, rtol=1e-6)


def test_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(0)
    z_mean = rng.normal(size=(1, 4)).astype(np.float32)
    z_log_var = rng.normal(scale=0.5, size=(1, 4)).astype(np.float32)
    z = z_mean + np.exp(0.5 * z_log_var) * rng.standard_normal((200_000, 4))
    log_q = np.asarray(losses.gaussian_log_density(z, z_mean, z_log_var))
    log_p = np.asarray(losses.standard_normal_log_density(z))
    monte_carlo = np.mean(log_q - log_p)
    standard_error = np.std(log_q - log_p) / math.sqrt(len(z))
    closed_form = float(losses.kl_divergence(z_mean, z_log_var)[0])
    assert abs(monte_carlo - closed_form) < 4 * standard_error


def test_bernoulli_nll_matches_cross_entropy_by_hand():
    rng = np.random.default_rng(1)
    images = (rng.random((2, 28, 28)) > 0.5).astype(np.float32)
    logits = rng.normal(size=(2, 28, 28)).astype(np.float32)
    probabilities = 1 / (1 + np.exp(-logits.astype(np.float64)))
    by_hand = -np.sum(
        images * np.log(probabilities) + (1 - images) * np.log(1 - probabilities), axis=(1, 2)
    )
    np.testing.assert_allclose(losses.bernoulli_nll(images, logits), by_hand, rtol=1e-5)


def test_bernoulli_nll_of_zero_logits_is_log_two_per_pixel():
    nll = losses.bernoulli_nll(np.ones((1, 784)), np.zeros((1, 784)))
    np.testing.assert_allclose(nll, [784 * math.log(2)], rtol=1e-6)


def test_bernoulli_nll_is_finite_for_confident_logits():
    images = np.array([[0.0, 1.0, 0.0, 1.0]], np.float32)
    logits = np.array([[-200.0, 200.0, 200.0, -200.0]], np.float32)
    nll = np.asarray(losses.bernoulli_nll(images, logits))
    np.testing.assert_allclose(nll, [400.0], rtol=1e-6)  # two confident mistakes


def test_gaussian_nll_sigma_one_without_constant_is_half_the_squared_error():
    images = np.full((1, 784), 0.5, np.float32)
    means = np.zeros((1, 784), np.float32)
    half_squared_error = 0.5 * 784 * 0.25
    np.testing.assert_allclose(
        losses.gaussian_nll(images, means, 0.0, include_constant=False), [half_squared_error],
        rtol=1e-6
    )
    with_constant = half_squared_error + 784 / 2 * math.log(2 * math.pi)
    np.testing.assert_allclose(losses.gaussian_nll(images, means, 0.0), [with_constant],
                               rtol=1e-6)


def test_gaussian_nll_with_global_sigma():
    sigma = 0.1
    images = np.full((1, 28, 28), 0.2, np.float32)
    means = np.zeros((1, 28, 28), np.float32)
    expected = 0.5 * 784 * 0.04 / sigma**2 + 784 / 2 * math.log(2 * math.pi * sigma**2)
    np.testing.assert_allclose(losses.gaussian_nll(images, means, math.log(sigma)), [expected],
                               rtol=1e-5)


@pytest.mark.parametrize("shape", [(4,), (2, 2)])
def test_gaussian_nll_with_per_pixel_sigma(shape):
    images = np.arange(4, dtype=np.float32).reshape((1, *shape))
    means = np.zeros_like(images)
    log_sigma = np.log(np.array([1.0, 2.0, 0.5, 1.5], np.float32)).reshape(shape)
    sigma = np.exp(log_sigma.astype(np.float64)).ravel()
    x = images.ravel().astype(np.float64)
    expected = np.sum(0.5 * x**2 / sigma**2 + np.log(sigma) + 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(losses.gaussian_nll(images, means, log_sigma), [expected],
                               rtol=1e-5)


def test_gaussian_log_density_matches_numpy():
    z = np.array([[0.5, -1.0]], np.float32)
    mean = np.array([[0.0, 1.0]], np.float32)
    log_var = np.array([[0.0, math.log(4.0)]], np.float32)
    variance = np.exp(log_var)
    expected = np.sum(-0.5 * np.log(2 * math.pi * variance) - 0.5 * (z - mean) ** 2 / variance)
    np.testing.assert_allclose(losses.gaussian_log_density(z, mean, log_var), [expected],
                               rtol=1e-6)
