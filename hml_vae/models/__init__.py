"""Model builders, one module per family, and :func:`build_models` to pick one by config."""

from __future__ import annotations

from hml_vae.models.autoencoders import (
    AutoencoderModels,
    build_conv,
    build_denoising,
    build_recurrent,
    build_sparse,
    build_stacked,
    build_tied,
)


def build_models(config) -> AutoencoderModels:
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
    raise ValueError(f"no builder for model {config.model!r}.")
