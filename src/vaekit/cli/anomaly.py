"""`vaekit anomaly fit` and `vaekit anomaly score`: one-class anomaly detection from the command line.

    vaekit anomaly fit mnist --normal-label 3 --data-dir ../shared/data/mnist --out runs/anomaly-3
    vaekit anomaly score runs/anomaly-3                  # the test split of the data it was fitted on
    vaekit anomaly score runs/anomaly-3 new_data.npy --out scored/

`fit` trains an AnomalyDetector on normal data and writes a run folder: `detector/` (loadable with
`AnomalyDetector.load`), `run.json`, `loss_curve.png` and a histogram of the scores the threshold
was taken from. `score` writes `scores.csv` (score and flag per example), `scores_histogram.png`
(with the threshold) and `flagged.png` (the most anomalous examples with their error maps).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .common import RUN_FILE
from .common import load_data as _load
from .common import run_info as _run_info
from .common import say as _say
from . import args as flags
from ..distributions import InputError


KIND = "anomaly"  # run.json's "command", to tell an anomaly run folder from others


def _normal_only(data, label):
    """The examples of class `label` (the normal class), or all of them when label is None."""
    if label is None:
        return data
    if data.y is None:
        raise InputError(f"--normal-label needs labelled data, but {data.name!r} has no labels; leave it out.")
    keep = data.y == label
    if not keep.any():
        raise InputError(f"No example of {data.name!r} has label {label}; the labels run from "
                         f"{int(data.y.min())} to {int(data.y.max())}.")
    return data.subset(keep)


def _feature_names(source, data) -> list[str] | None:
    """Column names of a CSV table with a header (its label column left out), else None."""
    path = Path(str(source)).expanduser()
    if data.image_shape is not None or path.suffix.lower() != ".csv" or not path.is_file():
        return None
    with open(path, newline="") as f:
        header = [h.strip().strip('"').strip() for h in f.readline().split(",")]
    try:
        [float(h) for h in header]
        return None  # no header row
    except ValueError:
        pass
    names = [h for h in header if h.lower() not in ("label", "y")] if data.y is not None else header
    return names if len(names) == data.x.shape[1] else None


def _row_names(source, data) -> list[str] | None:
    """File names for a folder of images (one per example), else None."""
    from ..data import image_files

    path = Path(str(source)).expanduser()
    return [p.name for p in image_files(path)][:len(data)] if path.is_dir() else None


def _choose_out(args) -> Path:
    if args.out:
        out = Path(args.out)
        if out.exists() and any(out.iterdir()):
            if not args.overwrite:
                raise InputError(f"{out} already exists; pass --overwrite to replace it, or choose another --out.")
            if _run_info(out).get("command") != KIND:
                raise InputError(f"{out} is not a vaekit anomaly run folder; refusing to overwrite it, "
                                 "choose another --out.")
            shutil.rmtree(out)
        return out
    label = f"-{args.normal_label}" if args.normal_label is not None else ""
    base = Path("runs") / f"anomaly-{Path(str(args.data)).stem}{label}"
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


# ---- fit ----------------------------------------------------------------------------------------
def cmd_fit(args):
    from ..applications.detector import AnomalyDetector
    from ..plots import save_histogram, save_loss_curve

    if args.contamination is not None and args.target_fpr is not None:
        raise InputError("Give --contamination or --target-fpr, not both.")
    data = _normal_only(_load(args.data, "train", args.data_dir, args.limit), args.normal_label)
    det = AnomalyDetector(
        model=args.model, scoring=args.score, latent_dim=args.latent_dim, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, beta=args.beta, likelihood=args.likelihood, sigma=args.sigma,
        contamination=args.contamination if args.contamination is not None else 0.05, target_fpr=args.target_fpr,
        validation_fraction=args.validation_fraction, patience=args.patience, n_samples=args.n_samples, seed=args.seed,
        device=args.device, progress=not args.no_progress, trim=args.trim,
    )
    det._check_params()  # bad settings fail before a folder is made
    out = _choose_out(args)
    kind = "images" if data.image_shape is not None else f"a table of {data.x.shape[1]} features"
    print(f"Fitting an anomaly detector ({args.model}, score {args.score}) on {len(data)} normal examples "
          f"of {data.name} ({kind}) into {out}")
    det.fit(data.x)
    out.mkdir(parents=True, exist_ok=True)
    det.save(out / "detector")
    skip = ("func", "out", "overwrite", "command", "anomaly_command")
    record = {k: v for k, v in vars(args).items() if k not in skip}
    (out / RUN_FILE).write_text(json.dumps({"command": KIND, "data": args.data, "data_dir": args.data_dir,
                                            "normal_label": args.normal_label, "args": record}, indent=2) + "\n")
    rule = (f"{100 * args.target_fpr:g}% of held-out normal data" if args.target_fpr is not None
            else f"{100 * det.contamination:g}% of the data")
    print(f"Threshold {det.threshold_:.4g} ({_unit(det)}): the score that {rule} exceed; higher scores are anomalies.")
    print("Wrote:")
    _say(out / "detector", "detector")
    _say(save_loss_curve(det.history_, out / "loss_curve.png"), "loss curve")
    which = "held-out normal data" if args.target_fpr is not None else "training data"
    _say(save_histogram(det.calibration_scores_, out / "scores_histogram.png", threshold=det.threshold_,
                        title=f"anomaly scores of the {which}", xlabel=f"anomaly score ({_unit(det)})"), "histogram")


def _unit(det) -> str:
    return {"elbo": "negative ELBO, nats", "nll": "negative log-likelihood, nats",
            "recon": "squared reconstruction error"}[det.scoring]


# ---- score --------------------------------------------------------------------------------------
def cmd_score(args):
    from sklearn.metrics import roc_auc_score

    from ..applications.detector import AnomalyDetector, save_error_maps
    from ..atomic import atomic_write_bytes
    from ..plots import save_histogram

    det = AnomalyDetector.load(args.detector)
    run = Path(args.detector)
    info = _run_info(run)
    source = args.data or info.get("data")
    if source is None:
        raise InputError("Give the data to score: this detector folder does not say what it was fitted on.")
    data = _load(source, args.split, args.data_dir or info.get("data_dir"), args.limit)
    if args.threshold is not None:
        det.threshold_, det.offset_ = args.threshold, -args.threshold
    scores = det.anomaly_score(data.x)
    flags = scores > det.threshold_
    normal = args.normal_label if args.normal_label is not None else info.get("normal_label")

    default_out = (run if (run / RUN_FILE).is_file() else Path(".")) / f"score-{Path(str(source)).stem}"
    out = Path(args.out) if args.out else default_out
    out.mkdir(parents=True, exist_ok=True)
    names = _row_names(source, data)
    header = ["index"] + (["file"] if names else []) + ["score", "anomaly"] + (["label"] if data.y is not None else [])
    rows = [",".join(header)]
    for i, (s, f) in enumerate(zip(scores, flags)):
        row = [str(i)] + ([names[i]] if names else []) + [f"{s:.6g}", str(int(f))]
        rows.append(",".join(row + ([str(int(data.y[i]))] if data.y is not None else [])))
    atomic_write_bytes(out / "scores.csv", ("\n".join(rows) + "\n").encode())

    print(f"Scored {len(scores)} examples of {data.name}: {int(flags.sum())} flagged as anomalies "
          f"({100 * flags.mean():.1f}%) at threshold {det.threshold_:.4g} ({_unit(det)}).")
    groups = scores
    if normal is not None and data.y is not None:
        is_anomaly = (data.y != normal).numpy()
        if 0 < is_anomaly.sum() < len(is_anomaly):
            auroc = roc_auc_score(is_anomaly, scores)
            print(f"Label {normal} as normal, every other label as anomalous: AUROC {100 * auroc:.2f}%, "
                  f"{100 * flags[~is_anomaly].mean():.1f}% of normal and {100 * flags[is_anomaly].mean():.1f}% "
                  "of anomalous examples flagged.")
            groups = {f"label {normal} (normal)": scores[~is_anomaly], "other labels": scores[is_anomaly]}
    print("Wrote:")
    _say(out / "scores.csv", "scores")
    _say(save_histogram(groups, out / "scores_histogram.png", threshold=det.threshold_,
                        title=f"anomaly scores of {data.name}", xlabel=f"anomaly score ({_unit(det)})"), "histogram")
    order = np.argsort(-scores, kind="stable")[:args.top]
    flagged = order[flags[order]] if flags.any() else order
    title = None if flags.any() else "nothing flagged; the highest scores"
    if len(flagged) and args.top > 0:
        _say(save_error_maps(det, data.x, out / "flagged.png", index=flagged,
                             feature_names=_feature_names(source, data), title=title), "flagged")


# ---- the parser ---------------------------------------------------------------------------------
def add_anomaly_parser(subparsers) -> None:
    """Add `anomaly fit` and `anomaly score` to the `vaekit` command's subparsers."""
    from ..applications.choices import DEFAULT_LATENT_DIM, DEFAULT_SCORING, DETECTOR_MODELS, SCORES

    p = subparsers.add_parser(
        "anomaly", help="fit an anomaly detector on normal data, then score new data",
        description="One-class anomaly detection with a VAE: `fit` learns what normal data look like, "
                    "`score` flags what does not fit. Data: digits, mnist, fashion-mnist, a .npy/.npz/.csv "
                    "file or a folder of PNG/JPEG images. Images are modelled in [0, 1] (Gaussian, sigma 0.1); tables "
                    "are standardized (Gaussian with a learned variance).",
    )
    actions = p.add_subparsers(dest="anomaly_command", required=True, metavar="ACTION")

    f = actions.add_parser("fit", help="train a detector on normal data and write a run folder",
                           description="Train an anomaly detector on normal data; writes DETECTOR/ with "
                                       "the model, its threshold, a loss curve and a histogram of scores.")
    f.add_argument("data", help="normal data: digits, mnist, fashion-mnist, a .npy/.npz/.csv file or an image folder")
    f.add_argument("--normal-label", type=int, help="labelled data: train on this class only (the normal one)")
    f.add_argument("--model", choices=DETECTOR_MODELS, default="vae", help="vae (MLP, default) or conv (images only)")
    f.add_argument("--score", choices=SCORES, default=DEFAULT_SCORING,
                   help="nll: importance-sampled negative log-likelihood (default); elbo: negative ELBO; "
                        "recon: squared reconstruction error")
    flags.model_size(f, "KL weight (default 1)", beta_default=1.0, latent_default=DEFAULT_LATENT_DIM)
    flags.optimizer(f, "passes over the data (default: about 2000 optimizer steps)", 20,
                    "stop after N epochs without held-out improvement (default 20; 0: never)")
    flags.likelihood(f, "p(x|z) (default: gaussian for images, gaussian-learned for tables)")
    flags.sigma(f, "standard deviation of --likelihood gaussian (default 0.1 for images, 1 for standardized tables)")
    f.add_argument("--contamination", type=float,
                   help="share of the training data above the threshold (default 0.05)")
    f.add_argument("--target-fpr", type=float, help="instead: the false-positive rate wanted on normal data, "
                                                    "measured on a held-out --validation-fraction")
    f.add_argument("--validation-fraction", type=float, default=0.2,
                   help="share of the data held out to pick the best epoch and for --target-fpr (default 0.2)")
    f.add_argument("--n-samples", type=int, default=10, help="posterior samples per score (default 10)")
    f.add_argument("--trim", type=float, help="share of each training batch with the largest loss left out of "
                                              "training, against outliers in the training data (default 0.05 for "
                                              "tables, 0 for images; 0 when the training data are clean)")
    flags.data_dir(f)
    flags.limit(f, "use only the first N examples (before --normal-label)")
    flags.seed(f)
    flags.device(f)
    flags.out(f, "run folder (default runs/anomaly-DATA[-LABEL], numbered if it exists)")
    flags.overwrite(f)
    flags.no_progress(f)
    f.set_defaults(func=cmd_fit)

    s = actions.add_parser("score", help="score data with a fitted detector: scores.csv and pictures",
                           description="Score data with a fitted detector; writes scores.csv (score, flag), "
                                       "scores_histogram.png with the threshold, and flagged.png with the most "
                                       "anomalous examples and their error maps.")
    s.add_argument("detector", help="a run folder from `vaekit anomaly fit` or a folder from AnomalyDetector.save")
    s.add_argument("data", nargs="?", help="data to score (default: the data the detector was fitted on, --split)")
    flags.split(s, "test")
    s.add_argument("--normal-label", type=int, help="labelled data: the normal class, to report AUROC "
                                                    "(default: the --normal-label of fit)")
    s.add_argument("--threshold", type=float, help="flag scores above this instead of the fitted threshold")
    s.add_argument("--top", type=int, default=8, help="flagged examples to picture, most anomalous first (default 8)")
    flags.data_dir(s)
    flags.limit(s, "score only the first N examples")
    flags.out(s, "folder for the outputs (default DETECTOR/score-DATA)")
    s.set_defaults(func=cmd_score)
