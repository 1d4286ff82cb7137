"""hml_vae's layers, losses and every family's models on a Keras backend other than
TensorFlow, checked in one process (a backend is chosen once per process, before Keras is
imported).

    KERAS_BACKEND=jax python tests/backend_checks.py RESULTS.json SAVED_ON_TENSORFLOW

tests/test_jax_backend.py runs it and turns each entry of RESULTS.json into a test. Each
check compares with NumPy, or with the model before it was saved; a failed check records
its error and the others still run.
"""

# ruff: noqa: E402  (TensorFlow is blocked before anything is imported)
from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

# As if TensorFlow were not installed, which it need not be for these parts of hml_vae.
# (Keras' .keras saving would otherwise import it, only to ask whether it is there.)
sys.modules["tensorflow"] = None

import keras
import numpy as np
from autoencoder_checks import assert_one_training_step_lowers_loss, digits_images, noise_states
from keras import ops

from hml_vae import cli, families, losses
from hml_vae.config import make_config
from hml_vae.layers import DenseTranspose, KLDivergenceRegularizer, ReconstructionLoss, Sampling

IMAGE_SHAPE = (8, 8, 1)  # scikit-learn's digits: real images, and the smallest allowed
CHECKS = {}


def check(function):
    """Registers a check of this module under its function's name."""
    CHECKS[function.__name__] = function
    return function


def numpy(tensor) -> np.ndarray:
    return ops.convert_to_numpy(tensor)


def posterior(batch: int = 6, latent_dim: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, latent_dim)).astype(np.float32),
            rng.normal(scale=0.5, size=(batch, latent_dim)).astype(np.float32))


def numpy_kl(z_mean, z_log_var) -> np.ndarray:
    """(B, L) terms of KL(N(μ, σ²) || N(0, 1)) in float64."""
    z_mean, z_log_var = z_mean.astype(np.float64), z_log_var.astype(np.float64)
    return 0.5 * (np.exp(z_log_var) + z_mean**2 - 1.0 - z_log_var)


def gradients(function, *arguments):
    """d sum(function(*arguments)) / d each argument, with the backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(
            lambda *xs: function(*xs).sum(), argnums=tuple(range(len(arguments))))(
                *arguments)]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(argument, requires_grad=True) for argument in arguments]
        function(*tensors).sum().backward()
        return [tensor.grad.numpy() for tensor in tensors]
    raise ValueError(f"no gradient helper for the {backend} backend")


@check
def runs_without_tensorflow(directory):
    # Everything above and below ran with TensorFlow unimportable; this says so in the
    # results (an import of it would have failed the check that made it).
    assert sys.modules["tensorflow"] is None
    assert keras.backend.backend() != "tensorflow"


# --- Every family: build, one training step, save and reload --------------------------------


def family_check(name: str):
    def run(directory: Path):
        family = families.get(name)
        config = make_config(name, "tiny", image_shape=IMAGE_SHAPE)
        models = families.build(config)
        images = digits_images(32)
        # Compiled: on JAX one XLA program per step is cheaper than one per operation.
        assert_one_training_step_lowers_loss(models.whole, images, loss=family.loss,
                                             run_eagerly=False)
        models.save(directory)
        reloaded = families.load_bundle(config, directory)
        # Every backend's Keras reloads the weights; the noise comes from the seed again
        # (SeedGenerator states are not saved), so both models get the same state.
        for state, copy in zip(noise_states(models.whole), noise_states(reloaded.whole),
                               strict=True):
            copy.assign(state)
        np.testing.assert_array_equal(numpy(reloaded.whole(images)),
                                      numpy(models.whole(images)))
        # The encoder and the decoder alone (separate files for some families).
        codings = models.coding(images)
        np.testing.assert_array_equal(reloaded.coding(images), codings)
        np.testing.assert_array_equal(reloaded.decode(codings), models.decode(codings))
    return run


for _name in families.names():
    CHECKS[f"family_{_name}"] = family_check(_name)


# --- Layers and losses against NumPy ---------------------------------------------------------


@check
def sampling_kl_matches_numpy(directory):
    z_mean, z_log_var = posterior()
    layer = Sampling(beta=0.7, seed=1)
    layer([z_mean, z_log_var])
    expected = 0.7 * numpy_kl(z_mean, z_log_var).sum(axis=1).mean()
    np.testing.assert_allclose(float(numpy(layer.losses[0])), expected, rtol=1e-5)
    free = Sampling(free_bits=0.4, seed=1)
    free([z_mean, z_log_var])
    floored = np.maximum(numpy_kl(z_mean, z_log_var).mean(axis=0), 0.4).sum()
    np.testing.assert_allclose(float(numpy(free.losses[0])), floored, rtol=1e-5)


@check
def sampling_reparameterization_matches_numpy(directory):
    z_mean, z_log_var = posterior()
    z = numpy(Sampling(seed=11)([z_mean, z_log_var]))
    # The layer's first draw is the first draw of a SeedGenerator with its seed.
    epsilon = numpy(keras.random.normal(z_mean.shape, seed=keras.random.SeedGenerator(11)))
    np.testing.assert_allclose(z, z_mean + np.exp(0.5 * z_log_var) * epsilon, rtol=1e-6,
                               atol=1e-6)
    # Many draws: the sample moments are μ and σ².
    many_means = np.full((20_000, 2), [1.5, -2.0], np.float32)
    many_log_vars = np.full((20_000, 2), np.log([0.25, 4.0]), np.float32)
    samples = numpy(Sampling(seed=3)([many_means, many_log_vars]))
    np.testing.assert_allclose(samples.mean(axis=0), [1.5, -2.0], atol=0.05)
    np.testing.assert_allclose(samples.var(axis=0), [0.25, 4.0], rtol=0.05)
    assert not np.allclose(numpy(Sampling(seed=3)([z_mean, z_log_var])), z)  # other seed


@check
def sampling_gradients_match_numpy(directory):
    # z = μ + exp(½ log σ²)·ε: dz/dμ = 1 and dz/dlog σ² = ½ exp(½ log σ²)·ε.
    z_mean, z_log_var = posterior()
    layer = Sampling(seed=5, beta=0.0)
    epsilon = numpy(keras.random.normal(z_mean.shape, seed=keras.random.SeedGenerator(5)))
    d_mean, d_log_var = gradients(lambda m, v: layer([m, v]), z_mean, z_log_var)
    np.testing.assert_allclose(d_mean, np.ones_like(z_mean), rtol=1e-6)
    np.testing.assert_allclose(d_log_var, 0.5 * np.exp(0.5 * z_log_var) * epsilon, rtol=1e-5,
                               atol=1e-6)


@check
def reconstruction_loss_matches_numpy(directory):
    rng = np.random.default_rng(2)
    images = (rng.random((3, 4, 5, 1)) > 0.5).astype(np.float32)
    outputs = rng.normal(size=images.shape).astype(np.float32)
    bernoulli = ReconstructionLoss(image_shape=images.shape[1:])
    np.testing.assert_array_equal(numpy(bernoulli([images, outputs])), outputs)
    probabilities = 1.0 / (1.0 + np.exp(-outputs.astype(np.float64)))
    nll = -(images * np.log(probabilities) + (1 - images) * np.log(1 - probabilities))
    np.testing.assert_allclose(float(numpy(bernoulli.losses[0])),
                               nll.sum(axis=(1, 2, 3)).mean(), rtol=1e-5)
    gaussian = ReconstructionLoss(likelihood="gaussian", gaussian_sigma=0.5,
                                  learned_sigma="pixel", image_shape=images.shape[1:])
    gaussian([images, outputs])
    variance = 0.25
    per_pixel = 0.5 * ((images - outputs) ** 2 / variance + np.log(2 * math.pi * variance))
    np.testing.assert_allclose(float(numpy(gaussian.losses[0])),
                               per_pixel.sum(axis=(1, 2, 3)).mean(), rtol=1e-5)


@check
def losses_match_numpy(directory):
    z_mean, z_log_var = posterior()
    np.testing.assert_allclose(numpy(losses.kl_divergence(z_mean, z_log_var)),
                               numpy_kl(z_mean, z_log_var).sum(axis=1), rtol=1e-5)
    z = np.random.default_rng(4).normal(size=z_mean.shape).astype(np.float32)
    variance = np.exp(z_log_var.astype(np.float64))
    log_q = np.sum(-0.5 * np.log(2 * math.pi * variance) - 0.5 * (z - z_mean) ** 2 / variance,
                   axis=1)
    np.testing.assert_allclose(numpy(losses.gaussian_log_density(z, z_mean, z_log_var)), log_q,
                               rtol=1e-5)
    log_p = np.sum(-0.5 * np.log(2 * math.pi) - 0.5 * z.astype(np.float64) ** 2, axis=1)
    np.testing.assert_allclose(numpy(losses.standard_normal_log_density(z)), log_p, rtol=1e-5)


@check
def dense_transpose_matches_numpy(directory):
    dense = keras.layers.Dense(3, name="tied")
    dense.build((None, 6))
    layer = DenseTranspose(dense, activation="sigmoid")
    layer.build((None, 3))
    layer.bias.assign(np.arange(6, dtype=np.float32) / 10)  # (6,): its only weight
    codings = np.random.default_rng(5).random((4, 3), dtype=np.float32)
    kernel = numpy(dense.kernel).astype(np.float64)  # (6, 3), used transposed
    expected = 1.0 / (1.0 + np.exp(-(codings @ kernel.T + np.arange(6) / 10)))
    np.testing.assert_allclose(numpy(layer(codings)), expected, rtol=1e-5, atol=1e-6)


@check
def kl_sparsity_regularizer_matches_numpy(directory):
    activations = np.array([[0.2, 0.05], [0.4, 0.15]], np.float32)  # unit means 0.3, 0.1
    expected = 0.5 * (0.1 * math.log(0.1 / 0.3) + 0.9 * math.log(0.9 / 0.7))
    regularizer = KLDivergenceRegularizer(weight=0.5, target=0.1)
    np.testing.assert_allclose(float(numpy(regularizer(activations))), expected, rtol=1e-5)


@check
def loads_models_saved_on_tensorflow(directory):
    # Written by tests/test_jax_backend.py on TensorFlow, with its outputs.
    saved = Path(sys.argv[2])
    for name in ("tied", "vae"):
        config = make_config(name, "tiny", image_shape=IMAGE_SHAPE)
        models = families.load_bundle(config, saved / name)
        reference = np.load(saved / name / "outputs.npz")
        np.testing.assert_allclose(models.coding(reference["images"]), reference["codings"],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(models.reconstruct(reference["images"]),
                                   reference["reconstructions"], rtol=1e-5, atol=1e-6)


@check
def scripts_refuse_this_backend_in_one_line(directory):
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli.run_main(lambda: None)
    message = stderr.getvalue()
    assert code == 2, code
    assert message.count("\n") == 1 and "TensorFlow backend" in message, message
    assert f"KERAS_BACKEND={keras.backend.backend()!r}" in message, message


def main(results_path: str) -> int:
    results = {"backend": keras.backend.backend(), "checks": {}}
    for name, function in CHECKS.items():
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            with tempfile.TemporaryDirectory() as directory:
                function(Path(directory))
            outcome = {"ok": True}
        except Exception as error:  # recorded, so that the other checks still run
            outcome = {"ok": False, "error": f"{type(error).__name__}: {error}",
                       "traceback": traceback.format_exc()}
        outcome["seconds"] = round(time.perf_counter() - start, 2)
        outcome["cpu_seconds"] = round(time.process_time() - cpu_start, 2)
        results["checks"][name] = outcome
        print(f"{name}: {'ok' if outcome['ok'] else 'FAILED'} ({outcome['seconds']} s, CPU "
              f"{outcome['cpu_seconds']} s)", flush=True)
    Path(results_path).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
