"""Model builders, one module per family, and :func:`build_models` to pick one by config."""

from __future__ import annotations

from hml_vae.models.autoencoders import AutoencoderModels, build_stacked


def build_models(config) -> AutoencoderModels:
    """The named models for ``config.model`` sized by the config."""
    if config.model == "stacked":
        return build_stacked(hidden=config.hidden, latent_dim=config.latent_dim)
    raise ValueError(f"no builder for model {config.model!r}.")


def bundle_from_saved(config, model, encoder, decoder) -> AutoencoderModels:
    """The bundle for models loaded from a run directory (they no longer share layers)."""
    return AutoencoderModels(encoder=encoder, decoder=decoder, autoencoder=model)
