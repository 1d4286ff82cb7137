"""Semi-supervised classification with a run's pretrained encoder, against baselines.

    python scripts/semi_supervised.py --encoder-run runs/stacked --output runs/semi-stacked
    python scripts/semi_supervised.py --encoder-run runs/vae --labels 100,1000,10000 \
        --seeds 3 --output runs/semi-vae
    python scripts/semi_supervised.py --encoder-run RUN --labels 100 --seeds 1 --limit 2000 \
        --epochs 20 --output OUT        # smoke run

For every budget (labels, class-balanced, drawn from the training split with the seed) and
seed (0, 1, ... --seeds - 1): the encoder frozen with a new head, then fine-tuned; the same
architecture from scratch; logistic regression on the frozen codings. Early stopping uses
the budget's own validation part, never the test set. The data set is the encoder run's
(any image shape, any number of classes; it must have labels). OUTPUT gets settings.json,
results.json, results.md and accuracy_vs_labels.png; it appears only when everything is
written.

Ctrl-C (SIGINT) or SIGTERM stops after the (budget, seed) cell under way; running the same
command again resumes with the next cell (the finished ones are kept in
OUTPUT.incomplete/cells.json). A second signal stops at once, losing that cell.
"""

from __future__ import annotations

import argparse
import sys

from hml_vae import cli


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def head_sizes(text: str) -> tuple[int, ...]:
    """``"64"`` -> (64,); ``"0"`` or ``""`` -> () (softmax on the coding)."""
    if text.strip() in ("", "0"):
        return ()
    return cli.int_list(text)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder-run", required=True,
                        help="a finished run directory (any model) whose encoder is used")
    parser.add_argument("--labels", type=cli.int_list, default=(100, 300, 1000, 3000),
                        help="label budgets, comma-separated (default: 100,300,1000,3000)")
    parser.add_argument("--seeds", type=cli.positive_int, default=3,
                        help="seeds 0..N-1: a labeled subset and an initialisation each "
                        "(default: 3)")
    parser.add_argument("--output", required=True, help="directory to create")
    parser.add_argument("--limit", type=cli.positive_int,
                        help="use the first N training images (and proportionally fewer "
                        "test images; default: the encoder run's)")
    parser.add_argument("--data-dir", help="directory with the four IDX files (default: the "
                        "encoder run's)")
    parser.add_argument("--epochs", type=cli.positive_int,
                        help="sets both --frozen-epochs and --fine-tune-epochs")
    parser.add_argument("--frozen-epochs", type=cli.positive_int,
                        help="phase 1, encoder frozen: at most N epochs (default: 50)")
    parser.add_argument("--fine-tune-epochs", type=cli.positive_int,
                        help="phase 2, all layers: at most N epochs (default: 50)")
    parser.add_argument("--frozen-learning-rate", type=cli.positive_float,
                        help="phase 1 and scratch (Adam; default: 1e-3)")
    parser.add_argument("--fine-tune-learning-rate", type=cli.positive_float,
                        help="phase 2 (Adam; default: 1e-4)")
    parser.add_argument("--patience", type=cli.positive_int,
                        help="early stopping: epochs without a lower validation loss "
                        "(default: 10)")
    parser.add_argument("--batch-size", type=cli.positive_int, help="default: 32")
    parser.add_argument("--head", type=head_sizes,
                        help="hidden sizes of the head, e.g. 64 or 128,64; 0 for none "
                        "(default: 64)")
    parser.add_argument("--validation-fraction", type=fraction,
                        help="share of each budget used for early stopping (default: 0.2)")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def make_settings(args: argparse.Namespace):
    from hml_vae.semi_supervised import ExperimentSettings

    values = {
        "budgets": args.labels,
        "seeds": tuple(range(args.seeds)),
        "limit": args.limit,
        "data_dir": args.data_dir,
        "frozen_epochs": args.frozen_epochs or args.epochs,
        "fine_tune_epochs": args.fine_tune_epochs or args.epochs,
        "frozen_learning_rate": args.frozen_learning_rate,
        "fine_tune_learning_rate": args.fine_tune_learning_rate,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "head_units": args.head,
        "validation_fraction": args.validation_fraction,
    }
    return ExperimentSettings(**{key: value for key, value in values.items()
                                 if value is not None})


def main(argv=None) -> None:
    args = parse_args(argv)
    settings = make_settings(args)

    from hml_vae import semi_supervised  # imports TensorFlow: after the arguments are checked

    report = semi_supervised.run_experiment(args.encoder_run, settings, args.output,
                                            log=semi_supervised.log_to_stderr)
    print(semi_supervised.results_markdown(report))
    print(f"output: {args.output}")


def console() -> int:
    """The ``hml-vae-semi-supervised`` command."""
    return cli.run_main(main)


if __name__ == "__main__":
    sys.exit(console())
