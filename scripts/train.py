"""Train one model, evaluate it and write its run directory.

    python scripts/train.py --model stacked --output runs/stacked
    python scripts/train.py --model stacked --preset tiny --epochs 1 --limit 2000 --output RUN
    python scripts/train.py --model vae --output runs/vae
    python scripts/train.py --model vae --images ~/photos --image-size 64,64 --output RUN
    python scripts/train.py --model conv_vae --dataset cifar10 --output RUN
    python scripts/train.py --model stacked --npz faces.npz --output RUN
    python scripts/train.py --config runs/vae/config.json --epochs 50 --output runs/vae-50
    python scripts/train.py --model greedy --hidden 100 --latent-dim 30 --output runs/greedy
    python scripts/train.py --model conv_vae --likelihood gaussian --binarize none \\
        --gaussian-sigma 0.1 --warmup-epochs 5 --free-bits 0.1 --output RUN
    python scripts/train.py --model vae --strategy mirrored --cpu-replicas 2 --output RUN
    python scripts/launch_local_cluster.py --workers 2 -- --model vae --output RUN

Every flag but --preset, --config and --output is a field of hml_vae.config.Config
(--help lists them with their defaults). The run directory holds config.json, model.keras,
encoder.keras, decoder.keras, history.json, metrics.json, figures/ and report.md; it
appears only when the run has finished. Re-running the same command after an interruption
resumes at the last finished epoch; --restart discards the interrupted run and starts over.
On an error the command prints one line (--debug: the traceback too) and exits non-zero.
"""

from __future__ import annotations

import sys

from hml_vae import cli, distribute


def main(argv=None) -> None:
    args = cli.train_parser(__doc__.split("\n")[0]).parse_args(argv)
    config = cli.config_from_args(args)
    # TF_CONFIG and the strategy options, checked before training starts.
    task = distribute.read_tf_config()
    distribute.resolve_strategy(config.strategy, task, config.cpu_replicas)
    if args.restart:
        restart(args.output, task)

    from hml_vae.training import train_and_evaluate

    metrics = train_and_evaluate(config, args.output)
    if not metrics:
        print(f"worker finished; the chief writes the run directory {args.output}")
        return
    print(summary(metrics))
    print(f"run directory: {args.output}")


def restart(output: str, task) -> None:
    """--restart: removes OUTPUT.incomplete before training starts over."""
    from hml_vae.errors import ConfigError
    from hml_vae.runs import discard_incomplete

    if task is not None:
        # Workers copy the chief's checkpoint when they start: one of them could resume
        # from what the chief is removing.
        raise ConfigError(f"--restart cannot be used in a multi-worker cluster (TF_CONFIG is "
                          f"set); remove {output}.incomplete before starting the workers.",
                          flag="--restart")
    discarded = discard_incomplete(output)
    if discarded is not None:
        print(f"--restart: removed the interrupted run {discarded}", file=sys.stderr)


def summary(metrics: dict) -> str:
    """The run's headline numbers, one per line."""
    lines = []
    if "test_neg_elbo" in metrics:
        lines.append(
            f"test -ELBO {metrics['test_neg_elbo']:.2f} nats/image (reconstruction "
            f"{metrics['test_reconstruction_nll']:.2f} + KL {metrics['test_kl']:.2f}); "
            f"-log p(x) ≈ {metrics['test_nll_iwae']:.2f} (IWAE, K={metrics['iwae_samples']}); "
            f"test images binarized: {metrics['test_binarization']}")
    else:
        lines.append(f"test MSE per pixel: {metrics['test_mse_per_pixel']:.5f} "
                     f"(validation {metrics['valid_mse_per_pixel']:.5f})")
    for name, value in sorted(metrics.items()):
        if name.startswith(("test_denoising", "test_noisy", "test_coding", "stacked_")):
            lines.append(f"{name}: {value:.5f}")
    lines.append(f"trained {metrics['epochs_trained']} epochs in "
                 f"{metrics['train_seconds']:.1f} s")
    return "\n".join(lines)


def console() -> int:
    """The ``hml-vae-train`` command."""
    return cli.run_main(main)


if __name__ == "__main__":
    sys.exit(console())
