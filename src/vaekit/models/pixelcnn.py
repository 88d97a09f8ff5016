"""A gated PixelCNN (van den Oord et al. 2016) over a grid of discrete codes: the learned prior
p(z) = prod_i p(z_i | z_<i) of a VQ-VAE, in raster order (row by row, left to right).

Causality comes from masked convolutions in two stacks, which together have no blind spot:

- the vertical stack at (i, j) sees only rows strictly above i (all columns within its reach);
- the horizontal stack at (i, j) sees row i left of j, plus the vertical stack at (i, j).

The first layer uses mask A (it may not see the code it predicts: vertical rows < i, horizontal
columns < j); later layers use mask B (they may see their input at the same position, which by
induction already excludes the current code). The logits at position p therefore depend only on
the codes before p.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..distributions import InputError
from ..objectives import StepOutput


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel only covers what a stack may see, times a fixed 0/1 mask.

    The kernel is cropped to the causal half (so no work is spent on always-zero taps) and the
    input padded to match: `padding` is (left, right, top, bottom) as in F.pad, chosen so the
    kernel's last row and column sit on the output position. The mask (same shape as the kernel)
    then removes the output position itself where mask A asks for it.
    """

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor, padding: tuple[int, int, int, int]):
        super().__init__(in_channels, out_channels, tuple(mask.shape))
        self.causal_padding = padding
        # Rebuilt from the constructor arguments, so kept out of the state_dict.
        self.register_buffer("mask", mask.clone(), persistent=False)

    def forward(self, x):
        return F.conv2d(F.pad(x, self.causal_padding), self.weight * self.mask, self.bias)


def gate(x: torch.Tensor) -> torch.Tensor:
    """The gated activation tanh(a) * sigmoid(b), with [a | b] split along channels."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated PixelCNN layer: (v, h) -> (v', h'), each (B, C, H, W).

    With r = kernel_size // 2, the vertical kernel spans rows i-r..i and columns j-r..j+r, the
    horizontal kernel row i and columns j-r..j. Mask A (first=True) drops row i from the vertical
    kernel and column j from the horizontal one; mask B keeps them. The first layer also has no
    residual connection on the horizontal stack (it would pass the current code through).
    """

    def __init__(self, channels: int, kernel_size: int, first: bool):
        super().__init__()
        r = kernel_size // 2
        v_mask = torch.ones(r + 1, kernel_size)  # rows i-r..i, columns j-r..j+r
        h_mask = torch.ones(1, r + 1)  # row i, columns j-r..j
        if first:
            v_mask[-1] = 0  # not row i
            h_mask[0, -1] = 0  # not column j
        self.v_conv = MaskedConv2d(channels, 2 * channels, v_mask, padding=(r, r, r, 0))
        self.h_conv = MaskedConv2d(channels, 2 * channels, h_mask, padding=(r, 0, 0, 0))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.residual = not first

    def forward(self, v, h):
        v_pre = self.v_conv(v)  # (B, 2C, H, W), rows above only
        h_pre = self.h_conv(h) + self.v_to_h(v_pre)  # same position: the vertical stack never sees row i
        h_new = self.h_out(gate(h_pre))
        if self.residual:
            h_new = h_new + h
        return gate(v_pre), h_new


class PixelCNN(nn.Module):
    """PixelCNN(num_codes): an autoregressive distribution over (H, W) grids of code indices.

    Args:
        num_codes: number of distinct codes K (the codebook size).
        channels: width of both stacks.
        layers: gated layers; each widens the context by kernel_size // 2 positions.
        kernel_size: odd kernel size of the masked convolutions.
    """

    def __init__(self, num_codes: int, channels: int = 64, layers: int = 6, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise InputError(f"The PixelCNN kernel_size must be odd, got {kernel_size}; use 3 or 5.")
        self.num_codes = num_codes
        self.embed = nn.Embedding(num_codes, channels)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel_size, first=i == 0) for i in range(layers))
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, num_codes, 1)
        )

    def logits(self, indices: torch.Tensor) -> torch.Tensor:
        """Logits of p(z_i | z_<i) for every position: (B, H, W) long -> (B, K, H, W)."""
        x = self.embed(indices).permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)

    def log_prob(self, indices: torch.Tensor) -> torch.Tensor:
        """log p(z) in nats for grids of shape (B, H, W); shape (B,)."""
        nll = F.cross_entropy(self.logits(indices), indices, reduction="none")  # (B, H, W)
        return -nll.sum((1, 2))

    def loss(self, indices: torch.Tensor) -> StepOutput:
        """Mean negative log-likelihood of the grids; the per-example term is `prior_nll` (nats)."""
        nll = -self.log_prob(indices)
        return StepOutput(nll.mean(), {"prior_nll": nll})

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int], temperature: float = 1.0) -> torch.Tensor:
        """n grids of shape `shape` drawn ancestrally, one position at a time; (n, H, W) long.

        temperature < 1 sharpens each conditional (more typical, less varied samples).
        """
        height, width = shape
        device = self.embed.weight.device
        codes = torch.zeros(n, height, width, dtype=torch.long, device=device)
        for i in range(height):
            for j in range(width):
                logits = self.logits(codes)[:, :, i, j] / temperature  # (n, K)
                codes[:, i, j] = torch.multinomial(F.softmax(logits, dim=-1), 1).squeeze(1)
        return codes
