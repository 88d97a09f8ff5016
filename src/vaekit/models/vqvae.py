"""VQ-VAE (van den Oord et al. 2017): a convolutional autoencoder whose latent is a grid of
discrete codes, plus a gated PixelCNN prior over that grid for generating new images.

The model, written as its probability statements:

    z = (z_1..z_hw), z_i in {0..K-1}     ~ p(z), the PixelCNN prior (`prior_net`)
    x                                    ~ p(x | e_z), the chosen likelihood of the decoder's output
    q(z | x) = one-hot at k(x),          k(x)_i = argmin_k ||z_e(x)_i - e_k||  (deterministic)

It is not a Gaussian VAE, so `VQVAE` stands on the shared `Model` (config, capabilities, input
handling, saving) rather than on `BaseVAE`: it has no `posterior`/`prior()`/`reparameterize`, and
`encode` returns code indices, not (mu, logvar). It keeps the rest of the shared interface
(`loss -> StepOutput`, `decode`, `forward`, `sample`, `elbo`).

Training happens in two stages, as in the paper:

1. the autoencoder: `model.loss(x)` (what the Trainer minimises) = -log p(x | e_k(x)) + the
   commitment cost (+ the codebook loss when the codebook is not an EMA). The prior is not
   touched (its parameters get no gradient).
2. the prior: `train_prior(model, x)` fits `model.prior_net` to the codes of the training data
   (or a Trainer minimises `model.prior_loss(x)` over `model.prior_net.parameters()`).

One `save_pretrained` holds both, plus the codebook and all EMA state.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capabilities import Capabilities
from ..distributions import make_likelihood
from ..errors import InputError
from ..nets import padded_size
from ..objectives import StepOutput
from ..quantize import Quantized, VectorQuantizer, usage_stats
from .core import ImageShape, Model
from .registry import Option, register
from .pixelcnn import PixelCNN


@dataclass
class VQVAEConfig:
    in_channels: int = 1  # image channels
    image_size: tuple[int, int] = (28, 28)  # (H, W); an int means square
    channels: tuple[int, ...] = (32, 64)  # channels of the stride-2 convolutions; code grid = image / 2**len
    res_blocks: int = 2  # residual blocks at the code-grid resolution, in the encoder and the decoder
    num_codes: int = 128  # codebook size K
    code_dim: int = 16  # dimension of each code vector
    commitment: float = 0.25  # weight of the commitment cost ||z_e - sg[e]||^2 (paper: 0.25)
    decay: float | None = 0.99  # EMA decay of the codebook; None or 0 learns it by the codebook loss
    kmeans_init: bool = True  # initialise the codebook by k-means on the first training batch
    dead_code_threshold: float = 1.0  # re-seed codes used less than this many times per batch (EMA); 0: never
    likelihood: str = "bernoulli"  # p(x|z): 'bernoulli', 'gaussian' or 'gaussian-learned'
    sigma: float = 1.0  # standard deviation of a fixed-variance Gaussian likelihood
    prior_channels: int = 64  # width of the PixelCNN prior
    prior_layers: int = 6  # gated layers of the PixelCNN prior
    prior_kernel: int = 3  # (odd) kernel size of the PixelCNN prior's masked convolutions

    def __post_init__(self):
        size = self.image_size
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.channels = tuple(self.channels)
        if not self.channels:
            raise InputError("A VQVAE needs at least one stride-2 convolution: give channels=(32, 64) or similar.")


class ResidualBlock(nn.Module):
    """x + Conv1x1(ReLU(Conv3x3(ReLU(x)))), shape-preserving on (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x):
        return x + self.net(x)


def conv_encoder(in_channels: int, channels: tuple[int, ...], res_blocks: int, code_dim: int) -> nn.Sequential:
    """(B, C, H, W) -> (B, code_dim, H / 2**L, W / 2**L) with L = len(channels) 4x4 stride-2 convolutions."""
    layers: list[nn.Module] = []
    prev = in_channels
    for ch in channels:
        layers += [nn.Conv2d(prev, ch, 4, stride=2, padding=1), nn.ReLU()]
        prev = ch
    layers.append(nn.Conv2d(prev, prev, 3, padding=1))
    layers += [ResidualBlock(prev) for _ in range(res_blocks)]
    layers += [nn.ReLU(), nn.Conv2d(prev, code_dim, 1)]
    return nn.Sequential(*layers)


def conv_decoder(code_dim: int, channels: tuple[int, ...], res_blocks: int, out_channels: int) -> nn.Sequential:
    """The encoder's mirror: (B, code_dim, h, w) -> (B, out_channels, h * 2**L, w * 2**L)."""
    layers: list[nn.Module] = [nn.Conv2d(code_dim, channels[-1], 3, padding=1)]
    layers += [ResidualBlock(channels[-1]) for _ in range(res_blocks)]
    layers.append(nn.ReLU())
    rev = [*channels[::-1], out_channels]
    for i, (a, b) in enumerate(zip(rev[:-1], rev[1:])):
        layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
        if i < len(rev) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@register(summary="discrete codes with a PixelCNN prior", data="image", uses_latent_dim=False,
          options=(Option("--num-codes", "num_codes", int, "codebook size (default 128)"),),
          tiny={"channels": (16,), "res_blocks": 1, "num_codes": 16, "code_dim": 8,
                "prior_channels": 16, "prior_layers": 3, "prior_kernel": 3})
class VQVAE(ImageShape, Model):
    """VQVAE(num_codes=128): conv encoder -> vector quantizer -> conv decoder, with a PixelCNN prior.

    For 28x28 images and the default two stride-2 levels the code grid is 7x7. Sides that are not
    multiples of 2**len(channels) are zero-padded on the bottom/right and cropped after decoding.
    """

    model_type = "vqvae"
    config_class = VQVAEConfig
    capabilities = Capabilities(denoising=False, latent="codes", posterior="discrete", likelihood=False)

    def __init__(self, num_codes: int = 128, config: VQVAEConfig | None = None, **kwargs):
        config = config or VQVAEConfig(num_codes=num_codes, **kwargs)
        super().__init__(config)
        self.lik = make_likelihood(config.likelihood, config.sigma)
        levels = len(config.channels)
        self.padded = tuple(padded_size(s, levels) for s in config.image_size)
        self.grid_size = tuple(s >> levels for s in self.padded)  # (h, w) of the code grid
        self.encoder = conv_encoder(config.in_channels, config.channels, config.res_blocks, config.code_dim)
        self.quantizer = VectorQuantizer(
            config.num_codes, config.code_dim, commitment=config.commitment, decay=config.decay,
            kmeans_init=config.kmeans_init, dead_code_threshold=config.dead_code_threshold,
        )
        out_channels = self.lik.params_per_value * config.in_channels
        self.decoder = conv_decoder(config.code_dim, config.channels, config.res_blocks, out_channels)
        self.prior_net = PixelCNN(config.num_codes, config.prior_channels, config.prior_layers, config.prior_kernel)
        # Set by train_prior; sample() warns while the prior is still untrained.
        self.register_buffer("prior_fitted", torch.tensor(False))

    # ---- encoder, quantizer, decoder ---------------------------------------------------------
    def encoder_output(self, x) -> torch.Tensor:
        """The continuous encoder output z_e(x), shape (B, code_dim, h, w)."""
        x = self.as_batch(x)
        pad_h, pad_w = self.padded[0] - x.shape[-2], self.padded[1] - x.shape[-1]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.encoder(x)

    def quantize(self, z_e: torch.Tensor) -> Quantized:
        """Run the quantizer on z_e (B, D, h, w); `quantized` comes back as (B, D, h, w) too.

        In training mode this updates the codebook (k-means init, EMA, dead-code restarts)."""
        out = self.quantizer(z_e.permute(0, 2, 3, 1))  # channels last: (B, h, w, D)
        return out._replace(quantized=out.quantized.permute(0, 3, 1, 2))  # back to (B, D, h, w)

    def encode(self, x) -> torch.Tensor:
        """Code indices of x: (B, h, w) long; a single unbatched example gives (h, w).

        Never changes the codebook, in any mode."""
        x, single = self._batch(x)
        z_e = self.encoder_output(x)  # (B, D, h, w)
        indices = self.quantizer.assign(z_e.permute(0, 2, 3, 1))  # (B, h, w)
        return indices[0] if single else indices

    def code_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """Decoder input (B, D, h, w) from indices (B, h, w) (long) or quantized vectors (B, D, h, w)."""
        if not torch.is_floating_point(codes):
            return self.quantizer.lookup(codes.long()).permute(0, 3, 1, 2)  # (B, h, w, D) -> (B, D, h, w)
        return codes

    def decoder_params(self, codes: torch.Tensor) -> torch.Tensor:
        """Raw decoder output (logits or parameters), (B, P*C, H, W), cropped to the image size."""
        out = self.decoder(self.code_vectors(codes))
        return out[..., : self.config.image_size[0], : self.config.image_size[1]]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z) (probabilities for a Bernoulli likelihood), (B, C, H, W).

        `codes`: indices (B, h, w) of integer dtype, or quantized vectors (B, D, h, w) of float
        dtype; a single grid (h, w) or (D, h, w) gives a single image (C, H, W)."""
        single = codes.dim() == (2 if not torch.is_floating_point(codes) else 3)
        codes = codes.unsqueeze(0) if single else codes
        out = self.lik.mean(self.decoder_params(codes), len(self.data_shape))
        return out[0] if single else out

    def likelihood(self, codes: torch.Tensor):
        """p(x|z) for codes as in `decode`: batch shape (B,), event shape `data_shape`."""
        return self.lik(self.decoder_params(codes), len(self.data_shape))

    def forward(self, x):
        """(x_recon, indices, vq_loss): the mean of p(x | e_k(x)) (B, C, H, W), the codes (B, h, w)
        and the quantizer's per-example loss (B,). In training mode this updates the codebook."""
        x = self.as_batch(x)
        vq = self.quantize(self.encoder_output(x))
        x_recon = self.lik.mean(self.decoder_params(vq.quantized), len(self.data_shape))
        return x_recon, vq.indices, vq.loss

    @torch.no_grad()
    def reconstruct(self, x, y=None) -> torch.Tensor:
        """decode(encode(x)): the mean of p(x | e_k(x)), shaped like the batch (B, C, H, W); y is ignored."""
        return self.decode(self.encode(self.as_batch(x)))

    # ---- objectives --------------------------------------------------------------------------
    def loss(self, x, y=None, beta: float = 1.0, free_bits: float = 0.0) -> StepOutput:
        """The VQ-VAE objective averaged over the batch: -log p(x | e_k(x)) + commitment (+ codebook).

        There is no KL term to weight (q is a point mass and the prior is trained separately), so
        `beta` and `free_bits` are accepted, for a Trainer that passes them to every model, and
        have no effect; `y` is ignored (the model is unconditional).

        Terms, each of shape (B,): `reconstruction` (nats), `commitment`, `codebook` (zeros with an
        EMA codebook), and the batch statistics `perplexity` and `used_fraction` (one scalar per
        batch, repeated for each example).
        """
        x = self.as_batch(x)
        vq = self.quantize(self.encoder_output(x))
        rec = self.likelihood(vq.quantized).log_prob(x)  # (B,)
        loss = (vq.loss - rec).mean()
        batch = x.shape[0]
        return StepOutput(loss, {
            "reconstruction": -rec,
            "commitment": vq.commitment,
            "codebook": vq.codebook,
            "perplexity": vq.perplexity.expand(batch),
            "used_fraction": vq.used_fraction.expand(batch),
        })

    def prior_loss(self, x) -> StepOutput:
        """Negative log-likelihood (nats) of the codes of x under the prior; gradients reach only
        `prior_net`. Term `prior_nll`, shape (B,)."""
        with torch.no_grad():
            codes = self.encode(self.as_batch(x))
        return self.prior_net.loss(codes)

    def elbo(self, x, y=None, n_samples: int = 1) -> torch.Tensor:
        """A lower bound on log p(x) in nats, per example, shape (B,):

            log p(x) = log sum_z p(x|z) p(z) >= log p(x | k(x)) + log p_prior(k(x)),

        the ELBO of the point-mass posterior at the encoder's codes k(x) (KL(q||p) = -log p(k(x))).
        It holds for any codes, so it is a valid bound whatever the training state; it is tight only
        when the prior and decoder put their mass on k(x). `y` and `n_samples` are unused (q is
        deterministic).
        """
        x = self.as_batch(x)
        codes = self.encode(x)  # (B, h, w)
        return self.likelihood(codes).log_prob(x) + self.prior_net.log_prob(codes)

    def log_likelihood(self, x, y=None, k: int = 1000, chunk: int = 500) -> torch.Tensor:
        raise NotImplementedError(
            "VQVAE has a deterministic encoder, so there is no proposal to importance-sample log p(x) "
            "with; use model.elbo(x), a lower bound on log p(x)."
        )

    # ---- generation and diagnostics ----------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, y=None, temperature: float = 1.0) -> torch.Tensor:
        """n new images (n, C, H, W): code grids drawn from the PixelCNN prior, then decoded (mean).

        Train the prior first (`train_prior`); until then the codes come from a random network.
        `y` is ignored (the model is unconditional; the argument matches BaseVAE.sample).
        temperature < 1 sharpens the prior's conditionals."""
        if not bool(self.prior_fitted):
            warnings.warn("The VQVAE prior has not been trained, so samples decode random code grids; "
                          "call vaekit.models.vqvae.train_prior(model, x) first.", stacklevel=2)
        codes = self.prior_net.sample(n, self.grid_size, temperature)  # (n, h, w)
        return self.decode(codes)

    @torch.no_grad()
    def codebook_usage(self, x, batch_size: int = 512) -> dict:
        """How the codebook is used on data x: {'perplexity': float (1..K), 'used_fraction': float,
        'counts': (K,) long tensor of assignments}. Changes nothing."""
        x = self.as_batch(x)
        counts = torch.zeros(self.config.num_codes, dtype=torch.long, device=x.device)
        for chunk in x.split(batch_size):
            counts += torch.bincount(self.encode(chunk).reshape(-1), minlength=self.config.num_codes)
        perplexity, used = usage_stats(counts)
        return {"perplexity": perplexity.item(), "used_fraction": used.item(), "counts": counts}

    def extra_repr(self) -> str:
        return f"likelihood={self.lik.name}, grid={self.grid_size}, num_codes={self.config.num_codes}"


class CodePriorStage(nn.Module):
    """The VQ-VAE's second stage in the form the Trainer fits: examples are code grids (h, w),
    the loss is the PixelCNN prior's negative log-likelihood, the parameters are the prior's."""

    capabilities = Capabilities(denoising=False, latent="codes", posterior="discrete", likelihood=False)
    conditional = False

    def __init__(self, model: VQVAE):
        super().__init__()
        self.prior_net = model.prior_net
        self.data_shape = model.grid_size
        self.num_codes = model.config.num_codes

    def check_input(self, codes) -> torch.Tensor:
        """Code grids (N, h, w) with whole values in 0..num_codes-1 (as floats, as the Trainer passes them)."""
        codes = torch.as_tensor(codes)
        if tuple(codes.shape[1:]) != self.data_shape or (codes.numel() and (
                codes.min() < 0 or codes.max() >= self.num_codes or (codes != codes.round()).any())):
            raise InputError(f"codes must be grids of shape (N, {self.data_shape[0]}, {self.data_shape[1]}) with "
                             f"values in 0..{self.num_codes - 1}; use model.encode(x) to make them.")
        return codes

    def loss(self, codes, y=None, beta: float = 1.0, free_bits: float = 0.0) -> StepOutput:
        """Mean prior NLL of the grids (nats per example); term `prior_nll`. beta and free_bits do not apply."""
        return self.prior_net.loss(codes.long())


@torch.no_grad()
def encode_dataset(model: VQVAE, x, batch_size: int = 512) -> torch.Tensor:
    """Code indices of every example of x, in batches: (N, h, w) long."""
    x = model.as_batch(x)
    return torch.cat([model.encode(chunk) for chunk in x.split(batch_size)])


def train_prior(model: VQVAE, x=None, *, codes: torch.Tensor | None = None, epochs: int = 10,
                batch_size: int = 128, lr: float = 1e-3, progress: bool = True,
                seed: int | None = None, precision: str = "fp32") -> list[float]:
    """Fit `model.prior_net` to the codes of x (a trained autoencoder's training images), or to
    precomputed `codes` (N, h, w), with the Trainer (Adam, shuffled batches; `CodePriorStage`).
    Only the prior's parameters change. Returns the mean prior NLL (nats per example) of each
    epoch, and marks the prior as fitted (`model.prior_fitted`).
    """
    if codes is None:
        if x is None:
            raise InputError("Pass the training images x (or their precomputed codes=) to train the prior.")
        codes = encode_dataset(model, x)
    codes = torch.as_tensor(codes, device=model.prior_fitted.device)
    if codes.dim() != 3 or tuple(codes.shape[1:]) != model.grid_size or torch.is_floating_point(codes):
        raise InputError(f"codes must be integer grids of shape (N, {model.grid_size[0]}, {model.grid_size[1]}), "
                         f"got {tuple(codes.shape)} of dtype {codes.dtype}; use model.encode(x) to make them.")
    codes = codes.long()
    if codes.numel() and (codes.min() < 0 or codes.max() >= model.config.num_codes):
        raise InputError(f"codes must lie in 0..{model.config.num_codes - 1}; use model.encode(x) to make them.")

    from ..train import TrainConfig, Trainer

    if seed is None:  # a fresh seed from the global generator, as the Trainer needs one
        seed = int(torch.randint(2**31 - 1, ()).item())
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                         device=str(model.prior_fitted.device), precision=precision, channels_last=False)
    was_training = model.prior_net.training
    rows = Trainer(CodePriorStage(model), config, local=True).fit(codes)  # under torchrun only rank 0 gets here
    model.prior_net.train(was_training)
    history = [row["train_loss"] for row in rows]
    model.prior_fitted.fill_(True)
    return history
