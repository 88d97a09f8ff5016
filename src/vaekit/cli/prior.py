"""`vaekit prior fit`: fit a prior to a trained model's codes and save it in the model folder.

    vaekit prior fit runs/mnist-vae --kind diffusion
    vaekit sample runs/mnist-vae --prior standard      # N(0, I) again, for comparison
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import InputError
from ..priors.fit import DIFFUSION_STEPS
from . import args as flags
from .common import run_data, say


def cmd_prior_fit(args) -> None:
    from ..io import resolve_model_folder
    from ..loading import load
    from ..priors import fit_prior, save_prior
    from ..run_generation import codes_used
    from ..runs import Standardization, save_examples, from_model_space, demo_labels
    from ..threads import choose_threads

    if not Path(args.run).exists():
        raise InputError(f"{args.run} is not a folder: a prior is saved in a run or model folder you own; for a "
                         "shipped model, save a copy first (vaekit.load(name).save_pretrained(folder)).")
    choose_threads(args.threads)
    folder = resolve_model_folder(args.run)
    model = load(folder, prior="standard")
    data = run_data(args, "train", args.limit)
    stats = Standardization.read(args.run)
    if stats is not None:
        data = stats.apply(data)
    start = time.perf_counter()
    prior = fit_prior(model, data, args.kind, components=args.components, steps=args.steps, seed=args.seed,
                      say=print if not args.no_progress else None, progress=not args.no_progress)
    where = save_prior(prior, folder)
    print(f"Fitted a {args.kind} prior to the codes of {codes_used(args.kind, len(data))} training examples in "
          f"{time.perf_counter() - start:.1f} s; samples of {args.run} now come from it "
          "(--prior standard: from N(0, I)).")
    print("Wrote:")
    say(where, "prior")
    out = folder.parent if (folder.parent / "run.json").exists() else folder
    x = model.sample(64, demo_labels(model, 64))
    say(save_examples(model, from_model_space(x, args.run), out / f"samples_{args.kind}.png",
                      title=f"samples through the fitted {args.kind} prior"), "samples")


def add_parser(sub) -> None:
    p = sub.add_parser("prior", help="fit a prior to a trained model's codes, for better samples",
                       description="Priors fitted after training to the codes of the training data: a Gaussian "
                                   "mixture (seconds) or a latent diffusion model (minutes). The fitted prior is "
                                   "saved in the model folder and used for sampling from then on.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = actions.add_parser("fit", help="fit a prior and save it in the model folder")
    flags.run(fit)
    fit.add_argument("--kind", choices=["gmm", "diffusion"], default="gmm",
                     help="gmm (default: a Gaussian mixture, components by BIC) or diffusion (a DDPM over the codes, "
                          "sampled by DDIM)")
    fit.add_argument("--components", type=int, help="gmm: number of components (default: chosen by BIC)")
    fit.add_argument("--steps", type=int, default=DIFFUSION_STEPS,
                     help=f"diffusion: optimizer steps (default {DIFFUSION_STEPS})")
    flags.data(fit)
    flags.data_dir(fit)
    flags.limit(fit, "fit to the first N training examples only")
    flags.seed(fit)
    flags.no_progress(fit)
    flags.threads(fit)
    fit.set_defaults(func=cmd_prior_fit)
