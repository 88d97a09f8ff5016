"""`vaekit train`: flags in, a TrainSpec out, the run layer (`vaekit.runs`) does the rest."""

from __future__ import annotations

from ..models.registry import cli_options, families
from ..precision import PRECISIONS
from ..run_generation import FIT_PRIOR_CHOICES
from ..runs import TrainSpec, train
from ..train import LR_SCHEDULES
from . import args as flags


DEFAULTS: dict = {}  # the train flags' defaults, to tell which flags a user gave


def cmd_train(args) -> None:
    flags_given = {k for k, v in vars(args).items() if k in DEFAULTS and v != DEFAULTS[k]}
    train(TrainSpec.from_flags({k: v for k, v in vars(args).items() if k != "func"}), given=flags_given,
          say=lambda message: print(message, flush=True))  # flushed: logs read by other programs see each line


def add_parser(sub) -> None:
    """Add `train` to the `vaekit` subcommands."""
    p = sub.add_parser("train", help="train a model and write a run folder",
                       description="Train a VAE. With no arguments: the chapter's MLP VAE on scikit-learn's "
                                   "digits, written to runs/digits-vae.")
    p.add_argument("--model", default="vae", metavar="MODEL",
                   help="model family: " + ", ".join(f"{f.name} ({f.summary})" for f in families().values())
                        + " (default vae)")
    flags.data(p, f"{flags.DATA_SOURCES} (default digits, offline)", default="digits")
    flags.data_dir(p)
    flags.model_size(p, "KL weight: >1 for a beta-VAE (default 1); for betatc it scales all three KL parts "
                        "(see --tc-weight)")
    flags.likelihood(p, "p(x|z): bernoulli for images in [0,1] (default; gaussian for digits and tables)")
    flags.sigma(p, "standard deviation of a fixed gaussian likelihood (default 0.2 for digits, else 1)")
    for flag, (opt, names) in cli_options().items():  # options the families declare
        p.add_argument(flag, type=opt.type, choices=opt.choices, help=f"{opt.help} (--model {', '.join(names)})")
    p.add_argument("--prior-epochs", type=int, default=10, help="epochs of the vqvae's PixelCNN prior (default 10)")
    p.add_argument("--fit-prior", choices=FIT_PRIOR_CHOICES, default="auto",
                   help="prior fitted to the codes after training, for the samples: gmm (a Gaussian mixture: seconds "
                        "for digits, about 20 s for MNIST on two cores), diffusion (a latent diffusion model, "
                        "minutes), none (sample from the model's own prior) or auto (default: gmm for codes of at "
                        "most 64 values, else none)")
    p.add_argument("--objective", choices=["elbo", "iwae"], default="elbo", help="training bound (default elbo)")
    p.add_argument("--k", type=int, default=5, help="importance samples for --objective iwae (default 5)")
    flags.optimizer(p, "passes over the data (default 100 for small data, 10 for MNIST)", 0,
                    "early stopping after N epochs without improvement (default 0: never)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                   help="constant (default), cosine (decay to lr/100 over the run) or trapezoid (linear "
                        "warm-up over the first 3%% of the steps, linear decay to 0 over the last 30%%: "
                        "with --lr 2e-3 --init he, MNIST's test -ELBO passes 100 nats after 5 epochs)")
    p.add_argument("--grad-clip", type=float, default=0.0, help="clip the gradient norm to this value "
                                                                   "(default 0: no clipping; 1 tames a large --lr)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep a moving average of the weights with this decay and save it as the model (default 0: "
                        "none; 0.999 averages about the last thousand steps: 1.4-2.5 nats better after 6-8 MNIST "
                        "epochs)")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="KL warm-up length in epochs (default 0)")
    p.add_argument("--free-bits", type=float, default=0.0, help="free nats per latent dimension (default 0)")
    p.add_argument("--binarize", action="store_true", help="dynamic binarization of pixels (for MNIST likelihoods)")
    p.add_argument("--corrupt", metavar="SPEC", help="denoising VAE: train on inputs corrupted by SPEC "
                                                    "(gaussian:0.5, salt-pepper:0.2, mask:0.3) with clean targets")
    flags.limit(p, "use only the first N training examples")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share for validation (default 0.1)")
    flags.seed(p)
    flags.device(p)
    flags.threads(p)
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default: bf16 autocast on CPUs with native bf16 and on CUDA, else fp32), fp32, "
                        "bf16, fp16 (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--no-channels-last", action="store_true", help="keep convolutions in the default memory layout")
    flags.out(p, "run folder (default runs/DATA-MODEL, numbered if it exists)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    flags.overwrite(p)
    p.add_argument("--init-from", metavar="MODEL", help="start from the weights of a saved model (a model or run "
                                                        "folder, or a pretrained name) instead of fresh ones; the "
                                                        "other flags must build its architecture")
    flags.no_progress(p)
    p.set_defaults(func=cmd_train)
    DEFAULTS.update({a.dest: a.default for a in p._actions if a.dest != "help"})
