"""The flags several `vaekit` commands share, each defined once (a command may reword the help)."""

from __future__ import annotations

from ..distributions import LIKELIHOODS

DATA_SOURCES = "digits, mnist, fashion-mnist, dsprites, dsprites-32, or a .npy/.npz/.csv file"


def run(p) -> None:
    """The positional model argument of the commands that use a trained model."""
    p.add_argument("run", help="a run folder (from vaekit train), a saved model folder, or a pretrained name")


def data(p, help: str = f"data set name ({DATA_SOURCES}) (default: the run's own data)", **kwargs) -> None:
    p.add_argument("--data", help=help, **kwargs)


def data_dir(p) -> None:
    p.add_argument("--data-dir", help="folder holding the MNIST/Fashion-MNIST files (else $VAEKIT_DATA, "
                                      "then ~/.cache/vaekit, then download)")


def split(p, default: str) -> None:
    p.add_argument("--split", choices=["train", "test"], default=default,
                   help=f"split of a named data set (default {default}; files have no splits)")


def limit(p, help: str = "use only the first N examples") -> None:
    p.add_argument("--limit", type=int, help=help)


def seed(p, help: str = "random seed (default 0)") -> None:
    p.add_argument("--seed", type=int, default=0, help=help)


def out(p, help: str, **kwargs) -> None:
    p.add_argument("--out", help=help, **kwargs)


def overwrite(p) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out run folder")


def no_progress(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def device(p) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")


def likelihood(p, help: str) -> None:
    p.add_argument("--likelihood", choices=list(LIKELIHOODS), help=help)


def sigma(p, help: str) -> None:
    p.add_argument("--sigma", type=float, help=help)


def model_size(p, beta_help: str, beta_default=None, latent_default: int = 20) -> None:
    """--latent-dim and --beta."""
    p.add_argument("--latent-dim", type=int, default=latent_default, help=f"dimensions of z (default {latent_default})")
    p.add_argument("--beta", type=float, default=beta_default, help=beta_help)


def optimizer(p, epochs_help: str, patience_default: int, patience_help: str) -> None:
    """--epochs, --batch-size, --lr and --patience."""
    p.add_argument("--epochs", type=int, help=epochs_help)
    p.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--patience", type=int, default=patience_default, help=patience_help)


def label(p, help: str) -> None:
    p.add_argument("--label", type=int, help=help)


def threads(p) -> None:
    p.add_argument("--threads", type=int, help="CPU threads (default: $VAEKIT_THREADS, else the cores that are idle)")


def prior(p) -> None:
    p.add_argument("--prior", default="saved", metavar="NAME",
                   help="which prior samples come from: saved (default: the fitted prior the model folder names, "
                        "if any), standard (the model's own, N(0, I)), gmm or diffusion (a fitted one)")
