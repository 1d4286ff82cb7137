"""Model builders, one module per family, and :func:`build_models` to pick one by config."""

from __future__ import annotations

from hml_vae.models.autoencoders import AutoencoderModels, build_stacked
from hml_vae.models.vae import VAEModels, build_conv_vae, build_dense_vae

VAE_BUILDERS = {"vae": build_dense_vae, "conv_vae": build_conv_vae}


def build_models(config) -> AutoencoderModels | VAEModels:
    """The named models for ``config.model`` sized by the config."""
    if config.model == "stacked":
        return build_stacked(hidden=config.hidden, latent_dim=config.latent_dim)
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


def bundle_from_saved(config, model) -> AutoencoderModels | VAEModels:
    """The bundle of a trainable whole reloaded from ``model.keras``: its encoder and
    decoder are its named sublayers."""
    if config.model in VAE_BUILDERS:
        return VAEModels.from_vae(model)
    return AutoencoderModels(model.get_layer("encoder"), model.get_layer("decoder"), model)
