"""Model builders, one module per family, and :func:`build_models` to pick one by config."""

from __future__ import annotations

from pathlib import Path

from hml_vae.models.autoencoders import (
    AutoencoderModels,
    build_conv,
    build_denoising,
    build_recurrent,
    build_sparse,
    build_stacked,
    build_tied,
)
from hml_vae.models.vae import VAEModels, build_conv_vae, build_dense_vae

VAE_BUILDERS = {"vae": build_dense_vae, "conv_vae": build_conv_vae}


def build_models(config) -> AutoencoderModels | VAEModels:
    """The named models for ``config.model`` sized by the config.

    ``greedy`` builds the (untrained) stacked architecture its pretraining fills in, so a
    greedy run's config rebuilds its model like any other.
    """
    if config.model in ("stacked", "greedy"):
        return build_stacked(hidden=config.hidden, latent_dim=config.latent_dim)
    if config.model == "tied":
        return build_tied(hidden=config.hidden, latent_dim=config.latent_dim)
    if config.model == "conv":
        return build_conv(filters=config.hidden, latent_dim=config.latent_dim)
    if config.model == "recurrent":
        return build_recurrent(hidden=config.hidden, latent_dim=config.latent_dim)
    if config.model == "denoising":
        return build_denoising(
            hidden=config.hidden, latent_dim=config.latent_dim, noise=config.noise,
            noise_stddev=config.noise_stddev, dropout_rate=config.dropout_rate,
            seed=config.seed,
        )
    if config.model == "sparse":
        return build_sparse(
            hidden=config.hidden, latent_dim=config.latent_dim, sparsity=config.sparsity,
            sparsity_target=config.sparsity_target, sparsity_weight=config.sparsity_weight,
        )
    if config.model in VAE_BUILDERS:
        return VAE_BUILDERS[config.model](
            config.hidden,
            latent_dim=config.latent_dim,
            likelihood=config.likelihood,
            gaussian_sigma=config.gaussian_sigma,
            learned_sigma=config.learned_sigma,
            beta=config.beta,
            free_bits=config.free_bits,
            seed=config.seed,
        )
    raise ValueError(f"no builder for model {config.model!r}.")


def load_saved_models(config, directory: Path) -> AutoencoderModels | VAEModels:
    """The bundle of a run directory's saved models.

    Autoencoders load ``encoder.keras``, ``decoder.keras`` and ``model.keras`` each on its
    own: the tied model is one flat graph (Keras 3 only keeps shared layers tied that way),
    so its encoder and decoder are not sublayers of ``model.keras``. A VAE's encoder and
    decoder are sublayers of ``model.keras``, whose Sampling layer the bundle needs.
    """
    import keras

    def load(name):
        return keras.saving.load_model(Path(directory) / name)

    if config.model in VAE_BUILDERS:
        return VAEModels.from_vae(load("model.keras"))
    return AutoencoderModels(load("encoder.keras"), load("decoder.keras"), load("model.keras"))
