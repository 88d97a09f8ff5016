"""The importance-sampled log-likelihood (Burda et al. 2016), streamed and batched.

    log p(x) ~ log (1/k) sum_i p(x, z_i) / q(z_i | x),   z_i ~ q(z | x)

accumulated in float64 over chunks of samples; `vaekit.evaluate` reports it as `nll`.

Speed: the encoder runs once per example, the decoder on chunks of up to 1024 samples of each
example. A ReLU-MLP decoder (the chapter's VAE) skips, per chunk, the hidden units that none of
the chunk's samples activates (exact; on the shipped mnist-mlp about half the decoder's products),
and a binary Bernoulli log-density is one softplus per pixel, its argument clamped above the
range where exp() turns subnormal (several times slower on CPUs, for under 1e-30 nats).
precision='bf16' runs the decoder's matrix products in bfloat16 (log-densities stay float32,
the log-sum-exp float64), with 0.0005 nats of NLL difference on the 10,000 MNIST test images
for the shipped mnist-mlp (benchmarks/eval_speed.py times both); for the other
models (flows, hierarchical) it runs their networks under bfloat16 autocast, their latent
densities staying float32. Convolutional models are scored in the channels-last layout (the
model is converted in place; its values do not change). The default, and what every reported
number uses unless it says otherwise, is float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributions import BernoulliLikelihood, StandardNormal
from .precision import autocast, check_precision

EVAL_PRECISIONS = ("fp32", "bf16")  # the precisions an importance-sampled NLL is computed in
ROWS_PER_PASS = 4096  # decoder rows (examples x samples) per batch of examples
SAMPLES_PER_PASS = 1024  # importance samples of one example per decoder pass


def fast_path(model) -> bool:
    """True for models that declare a diagonal Gaussian q(z|x) and have the N(0, I) prior: their
    log-weights are computed here from the encoder's (mu, logvar) with per-example noise."""
    caps = model.capabilities
    return caps.likelihood and caps.posterior == "gaussian" and isinstance(model.prior(), StandardNormal)


def _example_noise(seed: int, index: int, k: int, dim: int) -> torch.Tensor:
    """The standard-normal noise of example `index`: (k, dim), the same for any batching."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return torch.randn(k, dim, generator=generator)


SURE = -80.0  # softplus(v) for v below this is under 2e-35 nats: taken as softplus(SURE)


def _bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor, event_dims: int) -> torch.Tensor:
    """sum log Bernoulli(x | logits) over the event dims for binary x: -softplus((1 - 2x) * logits),
    one transcendental per value and every term small (no cancellation).

    Arguments below SURE (pixels the decoder is sure of) are raised to it: exp(v) there is a
    subnormal float, which CPUs compute several times slower, for a change below 1e-30 nats.
    """
    signed = torch.mul(logits, 1 - 2 * x)  # float32 also for bfloat16 logits: one pass converts and signs
    return F.softplus(signed.clamp_min_(SURE)).flatten(-event_dims).sum(-1).neg_()


def relu_mlp_layers(model) -> list[nn.Linear] | None:
    """The decoder's Linear layers for a model that declares an MLP decoder (the chapter's MLP VAE,
    beta-TC, CVAE) when it is Linear-ReLU-...-Linear, else None."""
    decoder = getattr(model, "decoder", None)
    if not model.capabilities.mlp_decoder or not isinstance(decoder, nn.Sequential):
        return None
    mods = list(decoder)
    linears, activations = mods[0::2], mods[1::2]
    if len(mods) % 2 == 0 or not all(type(m) is nn.Linear for m in linears) or \
            not all(type(m) is nn.ReLU for m in activations):
        return None
    return linears


class PrunedMLP:
    """A ReLU MLP run on a block of rows, skipping the hidden units that no row activates.

    A unit whose pre-activation is <= 0 on every row of the block outputs exactly zero there, so
    the next layer's product can leave out its row of the (transposed) weight matrix: the result
    is the MLP's own up to the order of floating-point sums. The rows of one example's posterior
    samples share most of their active units; on the chapter's MNIST VAE about a third of the
    hidden units are left out (58% of the last hidden layer on the shipped mnist-mlp).
    precision='bf16' casts the weights to bfloat16 once (activations and outputs follow).
    """

    def __init__(self, linears: list[nn.Linear], precision: str = "fp32", prune: bool | None = None):
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.prune = True if prune is None else prune
        self.params = []  # (W^T (in, out), bias (out,)) per layer, contiguous, for row selection
        for m in linears:
            bias = m.bias.detach() if m.bias is not None else m.weight.new_zeros(m.out_features)
            self.params.append((m.weight.detach().T.contiguous().to(self.dtype), bias.to(self.dtype)))

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """h (rows, in) -> (rows, out), in the MLP's precision.

        Hidden activations are kept transposed, (units, rows), so that leaving out units selects
        contiguous rows (a column gather of (rows, units) costs a third of the product it saves).
        """
        h = h.to(self.dtype).T  # (in, rows)
        keep = None  # indices of the previous layer's units active on some row, None: all
        *hidden, (weight_out, bias_out) = self.params
        for weight_t, bias in hidden:
            weight_t = weight_t if keep is None else weight_t.index_select(0, keep)  # (kept, out)
            h = torch.addmm(bias.unsqueeze(1), weight_t.T, h).clamp_min_(0)  # (out, rows)
            if self.prune:
                keep = h.amax(1).gt_(0).nonzero().squeeze(1)
                h = h.index_select(0, keep)  # (kept, rows)
        weight_out = weight_out if keep is None else weight_out.index_select(0, keep)
        return torch.addmm(bias_out, h.T, weight_out)  # (rows, out)


class GaussianLogWeights:
    """log p(x, z) - log q(z|x) for a model with the shared diagonal Gaussian posterior and N(0, I)
    prior, from the encoder's (mu, logvar) and given noise: z = mu + std * eps.

    log q is computed from eps itself (no cancellation in z - mu). The decoder is the model's
    `decoder_params`; for a ReLU MLP decoder each example's samples go through a PrunedMLP on
    their own. Log-densities are float32; the caller accumulates in float64.
    """

    def __init__(self, model, precision: str = "fp32"):
        self.model, self.precision = model, precision
        linears = relu_mlp_layers(model)
        self.mlp = PrunedMLP(linears, precision) if linears is not None else None
        self.event_dims = len(model.data_shape)

    def __call__(self, x, y, mu, logvar, eps, binary: bool) -> torch.Tensor:
        """x (B, ...), mu and logvar (B, L), eps (B, c, L) -> log-weights (B, c)."""
        b, c, dim = eps.shape
        std = torch.exp(0.5 * logvar).unsqueeze(1)  # (B, 1, L)
        z = mu.unsqueeze(1) + std * eps  # (B, c, L)
        log_q = -0.5 * eps.pow(2).sum(-1) - 0.5 * logvar.sum(-1, keepdim=True) - 0.5 * dim * math.log(2 * math.pi)
        log_p_z = -0.5 * z.pow(2).sum(-1) - 0.5 * dim * math.log(2 * math.pi)
        return self.log_px_given_z(x, y, z, binary) + log_p_z - log_q

    def log_px_given_z(self, x, y, z, binary: bool) -> torch.Tensor:
        model = self.model
        b, c, _ = z.shape
        labels = model._labels(y, z[:, 0]).repeat_interleave(c, 0) if y is not None else None  # (B * c, ...)
        if self.mlp is not None:
            inputs = model.decoder_input(z.reshape(b * c, -1), labels)  # (B * c, in)
            if self.mlp.prune:  # one example's samples at a time: they share active units
                rows = inputs.reshape(b, c, -1)
                return torch.stack([self._log_px(self.mlp(rows[j]), x[j].flatten(), binary, 1) for j in range(b)])
            params = self.mlp(inputs).reshape(b, c, -1)  # (B, c, decoder outputs), flat
            return self._log_px(params, x.flatten(1).unsqueeze(1), binary, 1)
        flat = z.reshape(b * c, -1)  # example-major rows: row j * c + s
        with autocast(flat.device, self.precision):
            params = model.decoder_params(flat, labels).float()
        params = params.reshape(b, c, *params.shape[1:])
        return self._log_px(params, x.unsqueeze(1), binary)

    def _log_px(self, params, x, binary, event_dims=None):
        event_dims = event_dims or self.event_dims
        if binary:
            return _bernoulli_log_prob(params, x, event_dims)
        return self.model.lik(params.float(), event_dims).log_prob(x)


class _StreamingLogMeanExp:
    """log (1/k) sum_i exp(a_i) and (1/k) sum_i a_i over chunks of a (c, B), in float64."""

    def __init__(self, b: int, device):
        self.max = torch.full((b,), -math.inf, dtype=torch.float64, device=device)
        self.scaled = torch.zeros(b, dtype=torch.float64, device=device)  # sum exp(a_i - max)
        self.total = torch.zeros(b, dtype=torch.float64, device=device)
        self.count = 0

    def add(self, a: torch.Tensor) -> None:
        a = a.double()
        new_max = torch.maximum(self.max, a.max(0).values)
        self.scaled = self.scaled * torch.exp(self.max - new_max) + torch.exp(a - new_max).sum(0)
        self.max = new_max
        self.total += a.sum(0)
        self.count += a.shape[0]

    def log_mean_exp(self) -> torch.Tensor:
        return self.max + torch.log(self.scaled) - math.log(self.count)

    def mean(self) -> torch.Tensor:
        return self.total / self.count


def importance_log_likelihood(model, x, y=None, k: int = 5000, batch_size: int | None = None,
                              chunk: int | None = None, precision: str = "fp32", seed: int = 0,
                              progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(x) estimates, mean log-weights) per example, both (N,) float64.

    The first is log (1/k) sum_i w_i with w_i = p(x, z_i) / q(z_i|x), z_i ~ q(z|x); the second
    (1/k) sum_i log w_i, a k-sample ELBO. `x` is a batch the model accepts (already binarized).
    Gaussian-posterior models draw each example's noise from its own stream seeded by (seed,
    index), so the numbers do not depend on batch_size or chunk; other models (flows,
    hierarchical) call their own `log_weights` under a seeded, restored global generator.
    """
    from tqdm.auto import tqdm

    check_precision(precision, EVAL_PRECISIONS)
    fast = fast_path(model)
    x = model.as_batch(x)
    if not fast and x.dim() == 4 and x.device.type == "cpu":  # convolutional models: oneDNN's fast layout
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    n, k, device = x.shape[0], max(int(k), 1), x.device
    batch_size, chunk = _batching(n, k, batch_size, chunk)
    # one softplus per pixel holds for independent Bernoulli pixels only (not an autoregressive subclass)
    binary = isinstance(model.lik, BernoulliLikelihood) and model.lik.factorised and bool(((x == 0) | (x == 1)).all())
    starts = range(0, n, batch_size)
    bar = tqdm(total=n * k, desc=f"NLL (k={k})", unit="sample", unit_scale=True, disable=not progress, leave=False)
    if fast:
        weights = GaussianLogWeights(model, precision)

        def score(start):
            with torch.inference_mode():  # grad mode is per thread
                xb, yb = x[start:start + batch_size], y[start:start + batch_size] if y is not None else None
                mu, logvar = model.encode(xb, yb)  # the encoder runs once per example: (B, L)
                noise = torch.stack([_example_noise(seed, start + i, k, mu.shape[-1]) for i in range(len(xb))])
                noise = noise.to(device)  # (B, k, L)
                parts = (weights(xb, yb, mu, logvar, noise[:, s:s + chunk], binary).T for s in range(0, k, chunk))
                return _log_mean_exp(parts, len(xb), device, bar)  # each part (c, B)

        results = _map_on_cores(score, starts) if device.type == "cpu" else map(score, starts)
        log_px, mean_lw = zip(*results)
    else:
        log_px, mean_lw = [], []
        with torch.inference_mode(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in starts:
                xb, yb = x[start:start + batch_size], y[start:start + batch_size] if y is not None else None
                with autocast(device, precision):  # the models keep their densities float32
                    parts = (model.log_weights(xb, yb, min(chunk, k - s)) for s in range(0, k, chunk))
                    lp, lw = _log_mean_exp(parts, len(xb), device, bar)  # each part (c, B)
                log_px.append(lp)
                mean_lw.append(lw)
    bar.close()
    return torch.cat(log_px).cpu(), torch.cat(mean_lw).cpu()


def _log_mean_exp(parts, b: int, device, bar) -> tuple[torch.Tensor, torch.Tensor]:
    """(log mean exp, mean) over the rows of log-weight chunks (c, B), both (B,) float64."""
    acc = _StreamingLogMeanExp(b, device)
    for lw in parts:
        acc.add(lw)
        bar.update(lw.numel())
    return acc.log_mean_exp(), acc.mean()


def _map_on_cores(fn, items) -> list:
    """[fn(item) for item in items], spread over torch's CPU threads, one thread per worker.

    Each worker runs its items with a single intra-op thread: two workers scoring two examples
    at once use two cores far better than one example's mid-sized products split over both.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = torch.get_num_threads()
    if workers <= 1:
        return [fn(item) for item in items]
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            return list(pool.map(fn, items))
    finally:
        torch.set_num_threads(workers)  # where a backend's thread count is process-wide


def _batching(n: int, k: int, batch_size: int | None, chunk: int | None) -> tuple[int, int]:
    """Examples per batch and samples per decoder pass: by default chunks of up to SAMPLES_PER_PASS
    samples of each example and about ROWS_PER_PASS rows (examples x samples) per pass."""
    chunk = min(chunk or SAMPLES_PER_PASS, k)
    if batch_size is None:
        batch_size = max(1, ROWS_PER_PASS // chunk)
    return min(batch_size, n), chunk


# ---- the other metrics --------------------------------------------------------------------
