"""Priors fitted to a trained model's codes after training, for better samples.

A VAE's aggregate posterior does not fill N(0, I) ("prior holes"), so decoding z ~ N(0, I) lands
where the decoder was never trained; a plain autoencoder's codes follow no distribution at all.
A prior fitted to the codes of the training data fixes both:

    prior = fit_prior(model, data, kind="gmm")        # or "diffusion"; attaches it to the model
    model.sample(64)                                  # now drawn through the fitted prior
    model.save_pretrained(folder)                     # saved in folder/priors/gmm/
    vaekit.load(folder)                               # comes back with it (prior="standard": without)

A fitted prior changes what is generated, not the trained model: ELBOs and likelihoods keep the
model's own p(z).
"""

from .diffusion import LatentDiffusion, LatentDiffusionConfig
from .fit import fit_prior, model_codes, without_fitted_prior
from .gmm import GaussianMixtureConfig, GaussianMixturePrior
from .store import PRIOR_KINDS, STANDARD, attach_saved_prior, load_prior, save_prior, saved_priors

__all__ = ["fit_prior", "model_codes", "without_fitted_prior", "GaussianMixturePrior", "GaussianMixtureConfig", "LatentDiffusion",
           "LatentDiffusionConfig", "PRIOR_KINDS", "STANDARD", "load_prior", "save_prior", "saved_priors",
           "attach_saved_prior"]
