"""The `vaekit` command: train a VAE, then sample, reconstruct, interpolate, traverse, evaluate it,
and use it (augment, denoise, anomaly detection).

Every command writes its files into a run folder and prints their paths. Bad input ends with
one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..errors import InputError
from ..version import __version__
from . import anomaly, apps, disentanglement, evaluate, explorer, features, info, pictures, prior, report, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaekit",
        description="Train variational autoencoders and look at what they learned.",
        epilog="Start with `vaekit train`: it trains the chapter's VAE on the digits embedded in "
               "scikit-learn in about a minute and writes a run folder with pictures.",
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train.add_parser(sub)
    pictures.add_parsers(sub)
    explorer.add_parser(sub)
    apps.add_app_parsers(sub)
    evaluate.add_evaluate_parser(sub)
    disentanglement.add_parser(sub)
    prior.add_parser(sub)
    features.add_parser(sub)
    anomaly.add_anomaly_parser(sub)
    info.add_parsers(sub)
    report.add_parser(sub)
    return parser


PACKAGE = Path(__file__).resolve().parent.parent


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """vaekit's own warnings as one line on stderr; those of other libraries as Python prints them."""
    if Path(filename).resolve().is_relative_to(PACKAGE):
        print(f"vaekit: warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args.func(args)
    except InputError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"vaekit: interrupted; {str(e) or 'nothing was written'}.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vaekit evaluate ... | head`: the reader left; not an error of ours
        sys.stdout = None  # nothing more to flush at exit
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
