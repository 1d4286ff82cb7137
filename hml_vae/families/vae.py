"""Dense variational autoencoder (docs/vae.md; HOML ch. 17) and what every VAE family
shares: the posterior heads, the assembly with the reconstruction loss, β warm-up, the
likelihood defaults and checks.

``encoder``: images (B, H, W, C) -> ``[z_mean, z_log_var, z]``; ``decoder``: z -> logits
(Bernoulli) or means (Gaussian), (B, H, W, C); the whole (``vae``) is trained with
``model.fit`` on −ELBO, whose two terms are added by layers: β·KL by ``Sampling`` and
−log p(x|z) by ``ReconstructionLoss``.

Example:
    >>> models = build_dense_vae((28, 28, 1), hidden=(150, 100), latent_dim=10)
    >>> models.vae.compile(optimizer="nadam")
    >>> models.vae.fit(images, epochs=25, batch_size=128)
    >>> models.generate(16, seed=0).shape
    (16, 28, 28, 1)
"""

from __future__ import annotations

import keras

from hml_vae.families import blocks
from hml_vae.families.bundle import VAEModels
from hml_vae.families.family import COMMON_FIGURES, Family, register
from hml_vae.layers import ReconstructionLoss, Sampling, check_likelihood

VAE_OPTIONS = ("likelihood", "gaussian_sigma", "learned_sigma", "beta", "warmup_epochs",
               "free_bits", "iwae_samples")
VAE_FIGURES = (*COMMON_FIGURES, "samples", "latent_grid")
# HOML's VAE network and optimisation (see the vae family's presets).
BOOK_VAE = {"hidden": (150, 100), "latent_dim": 10, "epochs": 25, "batch_size": 128,
            "optimizer": "nadam", "learning_rate": 1e-3, "beta": 1.0}
# The decoder σ whose Gaussian −log p(x|z) is Σ(x − x̂)² plus a constant: σ² = 1/2.
BOOK_SIGMA = 0.5 ** 0.5


def posterior_heads(x, latent_dim: int, beta: float, free_bits: float, seed):
    """Dense heads for μ and log σ² and the sampling step: features -> [μ, log σ², z]."""
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling(beta=beta, free_bits=free_bits, seed=seed, name="sampling")(
        [z_mean, z_log_var])
    return [z_mean, z_log_var, z]


def assemble(encoder, decoder, likelihood, gaussian_sigma, learned_sigma) -> VAEModels:
    """The trainable whole: images -> z -> decoder outputs, plus the reconstruction loss."""
    image_shape = tuple(encoder.input_shape[1:])
    images = keras.Input(shape=image_shape, name="images")
    _, _, z = encoder(images)
    outputs = decoder(z)
    outputs = ReconstructionLoss(
        likelihood=likelihood, gaussian_sigma=gaussian_sigma, learned_sigma=learned_sigma,
        image_shape=image_shape, name="reconstruction_loss",
    )([images, outputs])
    return VAEModels(encoder, decoder, keras.Model(images, outputs, name="vae"))


def build_dense_vae(image_shape, hidden=(150, 100), latent_dim: int = 10,
                    likelihood: str = "bernoulli", gaussian_sigma: float = 1.0,
                    learned_sigma: str = "none", beta: float = 1.0, free_bits: float = 0.0,
                    seed=None, activation: str = "relu") -> VAEModels:
    """Dense VAE: H·W·C -> hidden... -> (μ, log σ²) -> z -> reversed(hidden)... -> H·W·C.

    HOML's recipe is ``hidden=(150, 100), latent_dim=10``; the PyTorch examples' is
    ``hidden=(400,), latent_dim=20``. The decoder's last layer is linear: logits for a
    Bernoulli decoder, means for a Gaussian one.
    """
    hidden = tuple(hidden)
    blocks.check_positive_sizes((*hidden, latent_dim))
    check_likelihood(likelihood, gaussian_sigma, learned_sigma)
    images = keras.Input(shape=image_shape, name="images")
    x = keras.layers.Flatten(name="flatten")(images)  # (B, H, W, C) -> (B, H·W·C)
    x = blocks.apply(blocks.dense_layers(hidden, activation, "encoder_dense"), x)
    encoder = keras.Model(images, posterior_heads(x, latent_dim, beta, free_bits, seed),
                          name="encoder")
    decoder = blocks.dense_decoder(image_shape, hidden, latent_dim, activation,
                                   codings_name="z")
    return assemble(encoder, decoder, likelihood, gaussian_sigma, learned_sigma)


def check(config) -> None:
    """Sizes every VAE family can be built with (the config checks its options' values)."""
    blocks.check_positive_sizes((*config.hidden, config.latent_dim))


def fill(config) -> dict:
    """The decoder's likelihood when not given: Bernoulli for grayscale images (numbers
    are log-likelihoods of binarized images, redrawn every epoch), Gaussian for colour
    images, whose pixels are not plausibly binary."""
    values = {}
    likelihood = config.likelihood
    if likelihood is None and config.image_shape is not None:
        likelihood = "gaussian" if config.image_shape[-1] == 3 else "bernoulli"
        values["likelihood"] = likelihood
    if config.binarize is None and likelihood is not None:
        values["binarize"] = "dynamic" if likelihood == "bernoulli" else "none"
    return values


class BetaWarmup(keras.callbacks.Callback):
    """Raises β linearly from 0 to ``beta`` over ``warmup_epochs`` epochs, then holds it.

    In epoch e (0-based) β = beta · min(1, e / warmup_epochs): the first epoch trains the
    reconstruction alone, epoch ``warmup_epochs`` onwards the full (β-)ELBO. It sets the
    non-trainable ``beta`` variable of every ``Sampling`` layer and logs ``beta``. It
    depends only on the epoch number, so a resumed run continues the same schedule.
    """

    def __init__(self, beta: float = 1.0, warmup_epochs: int = 0):
        super().__init__()
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}.")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}.")
        self.target_beta = float(beta)
        self.warmup_epochs = int(warmup_epochs)

    def beta_at(self, epoch: int) -> float:
        if self.warmup_epochs == 0:
            return self.target_beta
        return self.target_beta * min(1.0, epoch / self.warmup_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        layers = find_sampling_layers(self.model)
        if not layers:
            raise ValueError("BetaWarmup needs a model with a Sampling layer (a VAE).")
        for layer in layers:
            layer.beta.assign(self.beta_at(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = self.beta_at(epoch)


def find_sampling_layers(model: keras.Model) -> list[Sampling]:
    """Every ``Sampling`` layer in ``model``, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, Sampling):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(find_sampling_layers(layer))
    return found


def vae_family(**declared) -> Family:
    """A VAE family: the options, checks, defaults and figures every VAE shares."""
    return Family(
        bundle_type=VAEModels,
        options=VAE_OPTIONS,
        variational=True,
        # No compiled loss: −ELBO is the sum of the layers' add_loss terms (β·KL from
        # Sampling, −log p(x|z) from ReconstructionLoss), which also log ``kl`` and
        # ``reconstruction_nll``.
        loss=None,
        fill=fill,
        callbacks=lambda config: [BetaWarmup(config.beta, config.warmup_epochs)],
        figures=VAE_FIGURES,
        **declared,
    )


def likelihood_arguments(config) -> dict:
    return {"likelihood": config.likelihood, "gaussian_sigma": config.gaussian_sigma,
            "learned_sigma": config.learned_sigma, "beta": config.beta,
            "free_bits": config.free_bits, "seed": config.seed}


FAMILY = register(vae_family(
    name="vae",
    summary="dense VAE, HOML's 784→150→100→10 (any sizes: --hidden 400 --latent-dim 20)",
    build=lambda config: build_dense_vae(blocks.require_image_shape(config), config.hidden,
                                         config.latent_dim, **likelihood_arguments(config)),
    # HOML 3rd ed. ch. 17's notebook ("Variational Autoencoder"): 784-150-100-10 codings,
    # ReLU, a linear output, Nadam (1e-3), 25 epochs, batch 128, on gray pixels with the
    # loss MSE + KL/784. That loss is 1/784 of −ELBO with a Gaussian decoder of σ² = 1/2
    # (Σ(x − x̂)² + KL, plus a constant), and Nadam's steps do not depend on the loss's
    # scale, so ``default`` trains exactly the book's objective. ``bernoulli`` is the same
    # network with a Bernoulli decoder on dynamically binarized pixels, whose numbers are
    # log-likelihoods of binary images.
    presets={
        "default": {**BOOK_VAE, "likelihood": "gaussian", "gaussian_sigma": BOOK_SIGMA,
                    "learned_sigma": "none", "binarize": "none"},
        "bernoulli": {**BOOK_VAE, "likelihood": "bernoulli", "binarize": "dynamic"},
        "tiny": {"hidden": (16,), "latent_dim": 4, "epochs": 1, "batch_size": 64,
                 "iwae_samples": 8},
    },
    xla=True,
    check=check,
    describe=lambda config: (
        f"dense VAE {blocks.pixel_count(config.image_shape)}-"
        f"{'-'.join(map(str, config.hidden))}-{config.latent_dim}, {config.likelihood} "
        f"decoder"),
))
