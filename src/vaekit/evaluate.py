"""Measuring a trained model on held-out data: likelihood, bounds, reconstruction, latent usage.

    from vaekit import evaluate
    report = evaluate(model, "mnist", data_dir="path/to/mnist", k=5000)   # or a Dataset / tensor
    report["nll"], report["nll_se"], report["bpd"], report["active_units"]

Every number that is an average over examples comes with its standard error (`<key>_se`,
the sample standard deviation over examples divided by sqrt(n)). Conventions, all in nats
per example unless said otherwise:

  nll          -log p(x), estimated by importance sampling with k samples from q(z|x)
               (Burda et al. 2016): log p(x) ~ log (1/k) sum_i p(x, z_i) / q(z_i | x). The
               log-sum-exp runs over all k log-weights in float64, streamed over chunks of
               samples. For finite k it is an upper bound on the true NLL in expectation (the
               estimate of log p(x) is biased low) and tightens as k grows. Models with the shared
               diagonal Gaussian posterior draw each example's samples from its own random stream
               (seeded by `seed` and the example's index), so their numbers do not depend on
               batch_size or chunk; flows and hierarchical models use their own `log_weights`.
  elbo         the evidence lower bound itself (a negative number, <= log p(x)): the mean of the
               same k log-weights, i.e. a k-sample Monte Carlo ELBO; with k=0 the model's `elbo`
               (one sample, analytic KL where there is one). Per example elbo <= -nll always holds
               (the mean of numbers is at most their log-mean-exp).
  nelbo        -elbo: the negative ELBO, the training loss scale, an upper bound on nll.
  bpd          bits per dimension, nll / (D ln 2) over the D values of an example, for a Bernoulli
               likelihood (a discrete density). For continuous likelihoods a density's bits/dim
               depend on the data's quantization, so bpd is None. VQ-VAE: from nelbo.
  recon_nll    -log p(x|z) for one z ~ q(z|x): the ELBO's reconstruction term (the loss term).
  recon_error  squared error of model.reconstruct(x) (the decoded posterior mean) from x, summed
               over the D values of an example (the chapter's reconstruction error, as in
               detect_anomaly, but of the deterministic reconstruction).
  kl           KL(q(z|x) || p(z)) (closed form where the model has one, else one-sample Monte Carlo).
  kl_per_dim   mean closed-form KL of each latent dimension (diagonal Gaussian posteriors; for
               hierarchical ones given a posterior sample of the groups above).
  activity     Cov_x(E_q[z_d | x]) per latent dimension; `active_units` counts those above 0.01
               (Burda et al.'s criterion). E_q[z|x] is the posterior mean where it is known in
               closed form; for flow and hierarchical posteriors a Monte Carlo mean whose sampling
               variance is subtracted (an unbiased estimate of the covariance).
               Hierarchical models: a lower group's posterior mean follows its prior's mean, which
               moves with the groups above, so it varies across x even where q equals p and the
               unit carries nothing. There `active_units` counts the units whose KL(q || p),
               averaged over the data (`kl_per_dim`), exceeds 0.01 nats instead.
  layer_kl     hierarchical models: KL of each latent group, top (z_0) first.
  perplexity   VQ-VAE: exp(entropy of the average code usage) over the data, and `used_fraction`.

Data of a Bernoulli model is binarized once with binarize_fixed(x, seed=0) (the MNIST
likelihood protocol: the same binary test images whatever `seed`), unless binarize=None.
The importance-sampled estimator itself, and how it is made fast, is in vaekit.importance.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .distributions import BernoulliLikelihood
from .errors import InputError
from .importance import EVAL_PRECISIONS, fast_path, importance_log_likelihood
from .models.core import inference, trusted_inputs
from .precision import check_precision, warn_if_slow

ACTIVE_THRESHOLD = 0.01  # Burda et al.: a unit is active when Cov_x(E_q[z_d]) exceeds this
ACTIVE_KL = 0.01  # hierarchical posteriors: a unit is active when its mean KL(q || p) exceeds this (nats)
BINARIZE_SEED = 0  # the fixed binarization of test data (independent of the sampling seed)
MC_MEAN_SAMPLES = 32  # posterior samples per example for Monte Carlo E_q[z|x]


def evaluate(model, data, k: int = 5000, batch_size: int | None = None, binarize: str | None = "auto",
             limit: int | None = None, progress: bool = True, seed: int = 0, precision: str = "fp32",
             chunk: int | None = None, data_dir=None) -> dict:
    """Evaluate `model` on `data`; returns a dict of JSON-ready numbers (see the module docstring).

    model:      a vaekit model, or a path / pretrained name for vaekit.load.
    data:       a Dataset, a tensor or array of examples, an (x, y) pair, or a dataset name /
                file (its test split is used; `data_dir` as in load_dataset).
    k:          importance samples per example for nll (0 skips the importance-sampled parts).
    batch_size: examples per pass (default: as many as keep `chunk` * batch_size near 4096 rows).
    binarize:   'auto' (binarize once with a fixed seed when the likelihood is Bernoulli),
                'fixed' (always) or None / False (never).
    limit:      evaluate only the first `limit` examples.
    seed:       seeds the importance samples (each example has its own random stream, so the
                result does not depend on batch_size or chunk for Gaussian-posterior models).
    precision:  'fp32' (default) or 'bf16' (the networks in bfloat16, densities in float32).
    chunk:      importance samples per decoder pass (default: chosen from batch_size).
    """
    from .models import Model

    if isinstance(model, (str, Path)):
        from .loading import load

        model = load(model)
    if not isinstance(model, Model):
        raise InputError(f"evaluate needs a vaekit model, got {type(model).__name__}.")
    check_precision(precision, EVAL_PRECISIONS)
    if not isinstance(k, int) or k < 0:
        raise InputError(f"k must be a whole number of importance samples (0 or more), not {k!r}.")
    for name, value in (("batch_size", batch_size), ("chunk", chunk), ("limit", limit)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InputError(f"{name} must be a positive integer or None, not {value!r}.")
    caps = model.capabilities
    if not caps.likelihood and precision != "fp32":
        raise InputError(f"precision={precision!r} applies to the importance-sampled NLL, which a "
                         f"{model.model_type!r} model does not have.")

    start = time.perf_counter()
    device = next(model.parameters()).device
    warn_if_slow(precision, device)
    x, y, name = _examples(model, data, limit, data_dir)
    binarized = _binarize(model, x, binarize)
    if binarized:
        from .data import binarize_fixed

        x = binarize_fixed(x, seed=BINARIZE_SEED)
    x = x.to(device)
    y = y.to(device) if y is not None else None
    n, dims = x.shape[0], math.prod(x.shape[1:])
    report = {"model": model.model_type, "data": name, "n": n, "dims": dims, "k": k, "seed": seed,
              "precision": precision, "binarized": binarized}
    with inference(model), trusted_inputs(model):  # x was checked once by _examples
        if caps.latent == "codes":
            report.update(_vq_metrics(model, x, batch_size or 256))
        else:
            report.update(_density_metrics(model, x, y, k, batch_size, chunk, precision, seed, progress))
    bits = dims * math.log(2)
    source = "nll" if report.get("nll") is not None else "nelbo"
    discrete = isinstance(model.lik, BernoulliLikelihood) and report.get(source) is not None
    report["bpd"] = report[source] / bits if discrete else None
    report["bpd_se"] = report[f"{source}_se"] / bits if discrete else None
    report["bpd_from"] = source if discrete else None
    report["seconds"] = time.perf_counter() - start
    return _jsonable(report)


# ---- data ---------------------------------------------------------------------------------
def _examples(model, data, limit, data_dir):
    """(x as a batch of model-shaped float examples, labels or None, a name) from any data form."""
    from .data import Dataset, load_dataset

    name = None
    if isinstance(data, (str, Path)):
        data = load_dataset(data, split="test", data_dir=data_dir, limit=limit)
    if isinstance(data, Dataset):
        x, y, name = data.x, data.y, data.name
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        x, y = data, None
    x = torch.as_tensor(x)
    x = x / 255 if x.dtype == torch.uint8 else (x.float() if not torch.is_floating_point(x) else x)  # as the model reads them
    if limit is not None:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    if x.shape[0] < 1:
        raise InputError("There are no examples to evaluate; give at least one.")
    x = model.check_input(x.to(next(model.parameters()).device)).cpu()
    if model.conditional:
        if y is None:
            raise InputError("A conditional model needs labels: give a dataset with labels or an (x, y) pair.")
        y = torch.as_tensor(y)
        if len(y) != len(x):
            raise InputError(f"Got {len(x)} examples but {len(y)} labels; give one label per example.")
    else:
        y = None
    if len(x) < 2:
        raise InputError("Standard errors and active units need at least two examples; give more data.")
    return x, y, name


def _binarize(model, x, binarize) -> bool:
    if binarize in (None, False, "none"):
        return False
    if binarize not in ("auto", "fixed", True):
        raise InputError(f"binarize must be 'auto', 'fixed' or None, not {binarize!r}.")
    if binarize == "auto" and not isinstance(model.lik, BernoulliLikelihood):
        return False
    if x.min() < 0 or x.max() > 1:
        raise InputError("Binarization needs values in [0, 1]; rescale the data or pass binarize=None.")
    return True


def _mean_se(values) -> tuple[float, float]:
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    se = v.std(unbiased=True).item() / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return v.mean().item(), se


def _density_metrics(model, x, y, k, batch_size, chunk, precision, seed, progress) -> dict:
    from tqdm.auto import tqdm

    out: dict = {}
    n = x.shape[0]
    caps = model.capabilities
    if k > 0 and caps.likelihood:
        t0 = time.perf_counter()
        log_px, mean_lw = importance_log_likelihood(model, x, y, k, batch_size, chunk, precision, seed, progress)
        out["nll_seconds"] = time.perf_counter() - t0
        out["nll"], out["nll_se"] = _mean_se(-log_px)
        elbo = mean_lw
    else:
        out["nll"] = out["nll_se"] = out["nll_seconds"] = None
        elbo = None

    # one-sample terms, closed-form KLs, reconstructions and posterior means, in batches
    step = batch_size or 500
    terms: dict[str, list] = {}
    elbo_parts, recon_err, means, mc_var, kl_dims = [], [], [], [], []
    closed_form = fast_path(model)
    with torch.inference_mode(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed + 1)
        for start in tqdm(range(0, n, step), desc="ELBO terms", disable=not progress, leave=False):
            xb = x[start:start + step]
            yb = y[start:start + step] if y is not None else None
            for key, value in model.loss(xb, yb).terms.items():
                if value.dim() == 1 and value.shape[0] == xb.shape[0]:
                    terms.setdefault(key, []).append(value.double().cpu())
            if elbo is None and caps.likelihood:
                elbo_parts.append(model.elbo(xb, yb).double().cpu())
            recon = model.reconstruct(xb, yb).reshape(xb.shape[0], -1)
            recon_err.append((recon - xb.reshape(xb.shape[0], -1)).pow(2).sum(-1).double().cpu())
            if closed_form:
                q = model.posterior(xb, yb)
                means.append(q.mu.double().cpu())
                kl_dims.append(q.kl_per_dim().double().cpu())
            elif caps.posterior == "point":  # a deterministic code: its own mean
                means.append(model.encode(xb, yb)[0].double().cpu())
            else:
                if caps.posterior == "hierarchical":
                    kl_dims.append(model.unit_kl(xb).double().cpu())
                z, _ = model.sample_posterior(xb, yb, MC_MEAN_SAMPLES)  # (S, B, D)
                z = z.reshape(MC_MEAN_SAMPLES, xb.shape[0], -1).double()
                means.append(z.mean(0).cpu())
                mc_var.append((z.var(0, unbiased=True) / MC_MEAN_SAMPLES).cpu())
    if elbo is None and elbo_parts:
        elbo = torch.cat(elbo_parts)
    out["elbo"], out["elbo_se"] = _mean_se(elbo) if elbo is not None else (None, None)
    out["nelbo"], out["nelbo_se"] = (-out["elbo"], out["elbo_se"]) if elbo is not None else (None, None)
    out["recon_nll"], out["recon_nll_se"] = _mean_se(torch.cat(terms["reconstruction"]))
    out["recon_error"], out["recon_error_se"] = _mean_se(torch.cat(recon_err))
    out["kl"], out["kl_se"] = _mean_se(torch.cat(terms["kl"])) if "kl" in terms else (None, None)
    layers = sorted((key for key in terms if key.startswith("kl_") and key[3:].isdigit()), key=lambda s: int(s[3:]))
    out["layer_kl"] = [_mean_se(torch.cat(terms[key]))[0] for key in layers] or None
    out["layer_kl_se"] = [_mean_se(torch.cat(terms[key]))[1] for key in layers] or None
    out["kl_per_dim"] = torch.cat(kl_dims).mean(0).tolist() if kl_dims else None

    means = torch.cat(means)  # (N, D)
    activity = means.var(0, unbiased=True)
    if mc_var:  # subtract the Monte Carlo noise of the estimated means: E_x[Var_q(z) / S]
        activity = activity - torch.cat(mc_var).mean(0)
    out["activity"] = activity.tolist()
    if caps.posterior == "hierarchical":
        out["active_units"] = int((torch.tensor(out["kl_per_dim"]) > ACTIVE_KL).sum())
    else:
        out["active_units"] = int((activity > ACTIVE_THRESHOLD).sum())
    out["latent_dims"] = means.shape[1]
    out["perplexity"] = out["used_fraction"] = None
    return out


def _vq_metrics(model, x, batch_size) -> dict:
    elbo, recon, recon_err = [], [], []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            elbo.append(model.elbo(xb).double().cpu())
            recon.append(model.loss(xb).terms["reconstruction"].double().cpu())
            r = model.reconstruct(xb).reshape(xb.shape[0], -1)
            recon_err.append((r - xb.reshape(xb.shape[0], -1)).pow(2).sum(-1).double().cpu())
        usage = model.codebook_usage(x, batch_size)
    out = {"nll": None, "nll_se": None, "nll_seconds": None}
    out["elbo"], out["elbo_se"] = _mean_se(torch.cat(elbo))
    out["nelbo"], out["nelbo_se"] = -out["elbo"], out["elbo_se"]
    out["recon_nll"], out["recon_nll_se"] = _mean_se(torch.cat(recon))
    out["recon_error"], out["recon_error_se"] = _mean_se(torch.cat(recon_err))
    out["kl"] = out["kl_se"] = out["layer_kl"] = out["layer_kl_se"] = out["kl_per_dim"] = None
    out["activity"] = out["active_units"] = out["latent_dims"] = None
    out["perplexity"], out["used_fraction"] = usage["perplexity"], usage["used_fraction"]
    out["num_codes"] = model.config.num_codes
    return out


def _jsonable(d: dict) -> dict:
    def fix(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        if isinstance(v, list):
            return [fix(e) for e in v]
        return v

    return {key: fix(value) for key, value in d.items()}


# ---- presentation -------------------------------------------------------------------------
def format_report(report: dict) -> str:
    """The report as a small table for the screen: metric, value, standard error, unit."""
    rows = [
        ("NLL (importance sampled, k={k})", "nll", "nats"),
        ("negative ELBO", "nelbo", "nats"),
        ("bits per dimension", "bpd", "bits"),
        ("reconstruction -log p(x|z)", "recon_nll", "nats"),
        ("reconstruction squared error", "recon_error", "per example"),
        ("KL(q(z|x) || p(z))", "kl", "nats"),
    ]
    lines = [f"{report.get('model')} on {report.get('data') or 'data'}: {report['n']} examples"
             f"{', binarized (fixed seed)' if report.get('binarized') else ''}, precision {report.get('precision')}"]
    width = 34
    for label, key, unit in rows:
        if report.get(key) is None:
            continue
        se = report.get(f"{key}_se")
        se_text = f" ± {se:.3f}" if se is not None else ""
        lines.append(f"  {label.format(k=report.get('k')):<{width}} {report[key]:>10.3f}{se_text:<10} {unit}")
    if report.get("layer_kl"):
        for i, (v, se) in enumerate(zip(report["layer_kl"], report["layer_kl_se"])):
            lines.append(f"  {'KL of latent group ' + str(i):<{width}} {v:>10.3f} ± {se:.3f}    nats")
    hierarchical = bool(report.get("layer_kl"))  # active by KL; one KL per unit would fill screens
    if report.get("active_units") is not None:
        criterion = "active units (KL > 0.01)" if hierarchical else "active units (Cov > 0.01)"
        lines.append(f"  {criterion:<{width}} {report['active_units']:>10d} of {report['latent_dims']}")
    if report.get("kl_per_dim") and not hierarchical:
        kls = " ".join(f"{v:.2f}" for v in report["kl_per_dim"])
        lines.append(f"  {'KL per latent dimension':<{width}} {kls}")
    if report.get("perplexity") is not None:
        lines.append(f"  {'codebook perplexity':<{width}} {report['perplexity']:>10.1f} of {report['num_codes']} codes")
        lines.append(f"  {'codes used':<{width}} {100 * report['used_fraction']:>9.0f}%")
    timing = f"  {report['seconds']:.1f} s"
    if report.get("nll_seconds") is not None:
        timing += f" ({report['nll_seconds']:.1f} s for the NLL)"
    lines.append(timing)
    return "\n".join(lines)
