"""Train one model, evaluate it and write its run directory.

    python scripts/train.py --model stacked --output runs/stacked
    python scripts/train.py --model stacked --preset tiny --epochs 1 --limit 2000 --output RUN
    python scripts/train.py --model stacked --data-dir ~/data/fashion --output RUN
    python scripts/train.py --model vae --output runs/vae
    python scripts/train.py --model vae --preset tiny --limit 1000 --epochs 1 --output RUN
    python scripts/train.py --model conv_vae --likelihood gaussian --binarize none \
        --gaussian-sigma 0.1 --beta 1 --warmup-epochs 5 --free-bits 0.1 --output RUN
    python scripts/train.py --model conv --output runs/conv
    python scripts/train.py --model denoising --noise gaussian --noise-stddev 0.2 --output RUN
    python scripts/train.py --model sparse --sparsity l1 --sparsity-weight 1e-4 --output RUN
    python scripts/train.py --model vae --strategy mirrored --cpu-replicas 2 --output RUN
    TF_CONFIG='{"cluster": {"worker": ["h0:2222", "h1:2222"]}, "task": {"type": "worker",
        "index": 0}}' python scripts/train.py --model vae --strategy multi_worker --output RUN
    python scripts/launch_local_cluster.py --workers 2 -- --model vae --output RUN

Greedy layer-wise pretraining has its own script, scripts/pretrain_greedy.py.

The run directory holds config.json, model.keras, encoder.keras, decoder.keras,
history.json and metrics.json (see README). It appears only when the run has finished.
Re-running the same command after an interruption resumes at the last finished epoch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from any checkout

from hml_vae import cli, distribute  # noqa: E402
from hml_vae.config import (  # noqa: E402
    LEARNED_SIGMA,
    LIKELIHOODS,
    MODELS,
    NOISE_KINDS,
    PRESETS,
    SPARSITY_KINDS,
    STRATEGIES,
    make_config,
)
from hml_vae.data import BINARIZATIONS, DATASETS  # noqa: E402


def add_family_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the denoising and sparse families (ignored by the others)."""
    parser = parser.add_argument_group("denoising and sparse autoencoders")
    parser.add_argument("--noise", choices=NOISE_KINDS,
                        help="denoising: input corruption in training (default: dropout)")
    parser.add_argument("--noise-stddev", type=cli.positive_float,
                        help="denoising, --noise gaussian: standard deviation (default: 0.2)")
    parser.add_argument("--dropout-rate", type=float,
                        help="denoising, --noise dropout: share of pixels zeroed, in (0, 1) "
                        "(default: 0.5)")
    parser.add_argument("--sparsity", choices=SPARSITY_KINDS,
                        help="sparse: kl (mean activation pulled to --sparsity-target) or l1 "
                        "(default: kl)")
    parser.add_argument("--sparsity-target", type=float,
                        help="sparse, kl: wanted mean activation of a coding unit, in (0, 1) "
                        "(default: 0.1)")
    parser.add_argument("--sparsity-weight", type=cli.positive_float,
                        help="sparse: penalty weight (default: 0.05 for kl, 1e-4 for l1)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # greedy models are built level by level: scripts/pretrain_greedy.py trains them.
    parser.add_argument("--model", required=True,
                        choices=[model for model in MODELS if model != "greedy"])
    parser.add_argument("--preset", default="default", choices=PRESETS,
                        help="default: HOML's recipe; tiny: seconds on a CPU (default: default)")
    parser.add_argument("--output", required=True, help="run directory to create")
    parser.add_argument("--dataset", choices=DATASETS, help="default: fashion_mnist")
    parser.add_argument("--data-dir", help="directory with the four IDX files (overrides "
                        "HML_VAE_DATA_DIR and the installed data set)")
    parser.add_argument("--download", action="store_true", default=None,
                        help="let tensorflow-datasets download the data (needs network)")
    parser.add_argument("--limit", type=cli.positive_int,
                        help="train on the first N images (and proportionally fewer "
                        "validation/test images)")
    parser.add_argument("--binarize", choices=BINARIZATIONS)
    parser.add_argument("--epochs", type=cli.positive_int)
    parser.add_argument("--batch-size", type=cli.positive_int)
    parser.add_argument("--latent-dim", type=cli.positive_int, help="size of the coding")
    parser.add_argument("--hidden", type=cli.int_list,
                        help="encoder hidden sizes, e.g. 100 or 150,100 (decoder mirrors); "
                        "conv and conv_vae: filters per convolution block, e.g. 16,32,64; "
                        "recurrent: LSTM units")
    parser.add_argument("--learning-rate", type=cli.positive_float)
    parser.add_argument("--patience", type=cli.positive_int, dest="early_stopping_patience",
                        help="early stopping patience in epochs (default: none)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="tf.distribute strategy: auto (multi_worker under a TF_CONFIG "
                        "cluster, mirrored with several GPUs or --cpu-replicas), default, "
                        "mirrored, multi_worker (default: default)")
    parser.add_argument("--cpu-replicas", type=cli.positive_int,
                        help="split the CPU into N logical devices for --strategy mirrored "
                        "(default: 1)")
    parser.add_argument("--steps-per-execution", type=cli.positive_int,
                        help="training steps per call into the compiled graph (default 32; "
                        "1 is Keras' default)")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the training step with XLA (default: on for the "
                        "families it makes faster on CPU: stacked, tied, sparse, greedy, vae, "
                        "recurrent)")
    parser.add_argument("--no-plots", action="store_false", default=None, dest="make_plots",
                        help="skip the figures (scripts/plot.py draws them later)")
    add_family_arguments(parser)
    add_vae_arguments(parser)
    return parser.parse_args(argv)


def add_vae_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the variational autoencoders (ignored by the others)."""
    vae = parser.add_argument_group("variational autoencoders (vae, conv_vae)")
    vae.add_argument("--likelihood", choices=LIKELIHOODS,
                     help="decoder: bernoulli (logits; default) or gaussian (means)")
    vae.add_argument("--gaussian-sigma", type=cli.positive_float,
                     help="σ of a Gaussian decoder, or the start of a learned σ (default 1, "
                     "the lecture's eq. 3)")
    vae.add_argument("--learned-sigma", choices=LEARNED_SIGMA,
                     help="learn the Gaussian decoder's σ: none, global or per pixel")
    vae.add_argument("--beta", type=cli.non_negative_float,
                     help="weight of the KL term (default 1: the ELBO)")
    vae.add_argument("--warmup-epochs", type=cli.non_negative_int,
                     help="raise β linearly from 0 over N epochs (default 0: no warm-up)")
    vae.add_argument("--free-bits", type=cli.non_negative_float,
                     help="free bits λ in nats per latent dimension (default 0: none)")
    vae.add_argument("--iwae-samples", type=cli.positive_int,
                     help="K of the importance-weighted log p(x) in metrics.json")


def main(argv=None) -> None:
    args = vars(parse_args(argv))
    model, preset, output = args.pop("model"), args.pop("preset"), args.pop("output")
    config = make_config(model, preset, **args)
    print(f"config: {config.to_json()}", file=sys.stderr)
    # TF_CONFIG and the strategy options, checked before TensorFlow is imported.
    distribute.resolve_strategy(config.strategy, distribute.read_tf_config(),
                                config.cpu_replicas)

    from hml_vae.training import train_and_evaluate  # imports TensorFlow: after validation

    metrics = train_and_evaluate(config, output)
    if not metrics:
        print(f"worker finished; the chief writes the run directory {output}")
        return
    if "test_neg_elbo" in metrics:
        print(f"test -ELBO {metrics['test_neg_elbo']:.2f} nats/image (reconstruction "
              f"{metrics['test_reconstruction_nll']:.2f} + KL {metrics['test_kl']:.2f}); "
              f"-log p(x) ≈ {metrics['test_nll_iwae']:.2f} (IWAE, K={metrics['iwae_samples']}); "
              f"test images binarized: {metrics['test_binarization']}")
    else:
        print(f"test MSE per pixel: {metrics['test_mse_per_pixel']:.5f} "
              f"(validation {metrics['valid_mse_per_pixel']:.5f})")
    for name, value in sorted(metrics.items()):
        if name.startswith(("test_denoising", "test_noisy", "test_coding")):
            print(f"{name}: {value:.5f}")
    print(f"trained {metrics['epochs_trained']} epochs in {metrics['train_seconds']:.1f} s")
    print(f"run directory: {output}")


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
