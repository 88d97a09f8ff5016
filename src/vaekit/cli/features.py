"""`vaekit features train`: train a feature network for the sample-quality metrics on labelled images.

    vaekit features train --data mnist --data-dir ../shared/data/mnist --out src/vaekit/pretrained_features/mnist
"""

from __future__ import annotations

from . import args as flags
from .common import load_data, say


def cmd_features_train(args) -> None:
    from ..data import DATASETS
    from ..features import train_feature_net
    from ..threads import choose_threads

    choose_threads(args.threads)
    train = load_data(args.data, "train", args.data_dir)
    test = load_data(args.data, "test", args.data_dir) if args.data.lower() in DATASETS else None  # files have no test split
    net, acc = train_feature_net(train, test, epochs=args.epochs, seed=args.seed, say=print)
    net.save_pretrained(args.out)
    if acc is not None:
        print(f"Test accuracy {acc:.4f}.")
    print("Wrote:")
    say(args.out, "feature network")


def add_parser(sub) -> None:
    p = sub.add_parser("features", help="train a feature network for the sample-quality metrics",
                       description="A small image classifier whose penultimate layer gives the features that FID, "
                                   "KID and precision/recall compare (vaekit ships ones for digits and MNIST).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = actions.add_parser("train", help="train one on labelled images")
    flags.data(t, f"labelled images ({flags.DATA_SOURCES} with labels, or an image folder)", required=True)
    flags.data_dir(t)
    t.add_argument("--epochs", type=int, default=5, help="passes over the data (default 5)")
    flags.out(t, "folder to write the feature network to", required=True)
    flags.seed(t)
    flags.threads(t)
    t.set_defaults(func=cmd_features_train)
