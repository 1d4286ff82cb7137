"""PyTorch modules that mirror hml_vae's families layer by layer, for
benchmarks/vs_pytorch.py (torch comes from benchmarks/requirements.txt, not hml_vae's)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional


def torch_model(family: str, config, image_shape):
    """The PyTorch mirror of hml_vae's model of ``family`` (the conv one channels first)."""
    rows, columns, channels = image_shape
    pixels = rows * columns * channels
    relu = nn.ReLU

    def dense_stack(sizes):
        layers = []
        for width_in, width_out in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Linear(width_in, width_out), relu()]
        return layers

    if family in ("stacked", "denoising"):
        sizes = (pixels, *config.hidden, config.latent_dim)
        decoder = dense_stack(tuple(reversed(sizes))[:-1]) + [nn.Linear(sizes[1], pixels)]
        # Dropout of the flattened inputs, in training only: the denoising recipe.
        noise = [nn.Dropout(config.dropout_rate)] if family == "denoising" else []
        return nn.Sequential(nn.Flatten(), *noise, *dense_stack(sizes), *decoder,
                             nn.Unflatten(1, tuple(image_shape)))
    if family == "tied":
        return TiedAutoencoder((pixels, *config.hidden, config.latent_dim), image_shape)
    if family == "sparse":
        return SparseAutoencoder(pixels, config.hidden, config.latent_dim,
                                 config.sparsity_target, config.sparsity_weight, image_shape)
    if family == "conv":
        return ConvAutoencoder(config.hidden, config.latent_dim, image_shape)
    if family == "recurrent":
        return RecurrentAutoencoder(config.hidden, config.latent_dim, image_shape)
    if family == "vae":
        return DenseVAE(config.hidden, config.latent_dim, pixels, config.likelihood,
                        config.gaussian_sigma)
    raise ValueError(f"no PyTorch mirror of {family}")


class TiedAutoencoder(nn.Module):
    """Dense ReLU layers down to the coding; the decoder multiplies by the same kernels
    transposed, each with a bias of its own, and its last layer is linear, as hml_vae's
    tied (DenseTranspose) model."""

    def __init__(self, sizes, image_shape):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:],
                                                                      strict=False))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(width))
                                       for width in reversed(sizes[:-1]))

    def forward(self, images):
        x = images.flatten(1)
        for layer in self.encoder:
            x = functional.relu(layer(x))
        for index, (layer, bias) in enumerate(zip(reversed(self.encoder), self.biases,
                                                  strict=True)):
            x = x @ layer.weight + bias  # weight is (out, in): this is the transpose
            if index < len(self.encoder) - 1:
                x = functional.relu(x)
        return x.view(-1, *self.image_shape)


class SparseAutoencoder(nn.Module):
    """Dense ReLU layers, a sigmoid coding and the mirrored decoder; after each training
    forward pass ``penalty`` holds the coding's KL sparsity penalty as Keras adds an
    activity regularizer's: weight · Σ_units KL(target ‖ mean activation), divided by the
    batch size."""

    def __init__(self, pixels, hidden, latent_dim, target, weight, image_shape):
        super().__init__()
        self.image_shape, self.target, self.weight = tuple(image_shape), target, weight
        sizes = (pixels, *hidden)
        layers = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(nn.Flatten(), *layers, nn.Linear(sizes[-1], latent_dim),
                                     nn.Sigmoid())
        back = (latent_dim, *reversed(hidden))
        layers = []
        for a, b in zip(back, back[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.decoder = nn.Sequential(*layers, nn.Linear(back[-1], pixels))

    def forward(self, images):
        coding = self.encoder(images)
        mean = coding.float().mean(0).clamp(1e-7, 1 - 1e-7)
        p = self.target
        divergence = p * torch.log(p / mean) + (1 - p) * torch.log((1 - p) / (1 - mean))
        self.penalty = self.weight * divergence.sum() / len(images)
        return self.decoder(coding).view(-1, *self.image_shape)


class ConvAutoencoder(nn.Module):
    """Conv 3×3 "same" + ReLU + 2×2 max pooling per filter count, a 3×3 conv to the
    coding size + global average pooling; a dense layer to the smallest map, then
    stride-2 transposed convolutions back (linear last), as hml_vae's conv."""

    def __init__(self, filters, latent_dim, image_shape):
        super().__init__()
        rows, _, channels = image_shape
        sizes = [rows]
        for _ in filters:
            sizes.append(sizes[-1] // 2)
        layers, width = [], channels
        for count in filters:
            layers += [nn.Conv2d(width, count, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width = count
        layers += [nn.Conv2d(width, latent_dim, 3, padding=1), nn.ReLU(),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.encoder = nn.Sequential(*layers)
        self.first = (filters[0], sizes[-1], sizes[-1])
        self.dense = nn.Linear(latent_dim, filters[0] * sizes[-1] ** 2)
        outputs = (*reversed(filters[:-1]), channels)
        layers, width, size = [], filters[0], sizes[-1]
        for index, count in enumerate(outputs):
            target = sizes[-2 - index]
            # Keras "valid" (2s+1) or "same" (2s), as hml_vae's upsample picks.
            padding, extra = (0, 0) if target == 2 * size + 1 else (1, 1)
            layers.append(nn.ConvTranspose2d(width, count, 3, stride=2, padding=padding,
                                             output_padding=extra))
            if index < len(outputs) - 1:
                layers.append(nn.ReLU())
            width, size = count, target
        self.decoder = nn.Sequential(*layers)

    def forward(self, images):
        codings = self.encoder(images)
        return self.decoder(self.dense(codings).view(-1, *self.first))

class RecurrentAutoencoder(nn.Module):
    """LSTMs over the rows down to the coding (last output), the coding repeated per
    row, LSTMs back up and a linear layer per row, as hml_vae's recurrent."""

    def __init__(self, hidden, latent_dim, image_shape):
        super().__init__()
        rows, columns, channels = image_shape
        self.rows = rows
        widths = (columns * channels, *hidden, latent_dim)
        self.encoder = nn.ModuleList(nn.LSTM(a, b, batch_first=True)
                                     for a, b in zip(widths, widths[1:], strict=False))
        back = (latent_dim, *reversed(hidden))
        self.decoder = nn.ModuleList(nn.LSTM(a, b, batch_first=True)
                                     for a, b in zip(back, back[1:], strict=False))
        self.output = nn.Linear(back[-1], columns * channels)

    def forward(self, images):
        x = images.flatten(2)  # (B, H, W, C) -> (B, H, W·C)
        for lstm in self.encoder:
            x, _ = lstm(x)
        x = x[:, -1:, :].expand(-1, self.rows, -1)
        for lstm in self.decoder:
            x, _ = lstm(x)
        return self.output(x).view(images.shape)

class DenseVAE(nn.Module):
    """hml_vae's dense VAE: ReLU hidden layers, Gaussian q(z|x), a Bernoulli (logits) or
    fixed-σ Gaussian (linear means) decoder; forward returns −ELBO per image in nats, with
    the log-density's constant as hml_vae reports it."""

    def __init__(self, hidden, latent_dim, pixels, likelihood="bernoulli", sigma=1.0):
        super().__init__()
        sizes = (pixels, *hidden)
        encoder = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            encoder += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(nn.Flatten(), *encoder)
        self.mean = nn.Linear(hidden[-1], latent_dim)
        self.log_var = nn.Linear(hidden[-1], latent_dim)
        back = (latent_dim, *reversed(hidden))
        decoder = []
        for a, b in zip(back, back[1:], strict=False):
            decoder += [nn.Linear(a, b), nn.ReLU()]
        self.decoder = nn.Sequential(*decoder, nn.Linear(back[-1], pixels))
        self.likelihood, self.sigma = likelihood, sigma

    def negative_log_likelihood(self, outputs, flat):
        if self.likelihood == "bernoulli":
            return functional.binary_cross_entropy_with_logits(outputs, flat,
                                                               reduction="none").sum(1)
        squared = ((flat - outputs) / self.sigma) ** 2
        constant = flat.shape[1] * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))
        return 0.5 * squared.sum(1) + constant

    def forward(self, images):
        h = self.encoder(images)
        mean, log_var = self.mean(h), self.log_var(h)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        nll = self.negative_log_likelihood(self.decoder(z).float(), images.flatten(1))
        kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp(), dim=1)
        return nll + kl.float()


def torch_optimizer(config, parameters):
    optimizers = {"nadam": torch.optim.NAdam, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    return optimizers[config.optimizer](parameters, lr=config.learning_rate)
