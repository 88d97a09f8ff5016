"""Residual convolutional cells for deep VAEs, free of batch normalisation.

Every cell is `x + branch(x)` whose last convolution starts with weights scaled down to a tenth, so a
freshly built stack of cells is close to the identity map (as in Fixup / SkipInit) while gradients
still reach every layer from the first step. Without batch statistics the cells behave the same
for a batch of 2 and of 2,000.
"""

from __future__ import annotations

import torch
import torch.nn as nn


BRANCH_INIT_SCALE = 0.1  # residual branches and latent parameter heads start this small


def scaled_init(module: nn.Module, scale: float = BRANCH_INIT_SCALE) -> nn.Module:
    """Multiply a layer's default initial weights by `scale` and zero its bias; returns the layer.

    scale=0 gives a layer whose output starts at zero (but then nothing upstream gets a gradient
    through it on the first step, so a small positive scale is the default).
    """
    with torch.no_grad():
        module.weight.mul_(scale)
        if module.bias is not None:
            module.bias.zero_()
    return module


class SqueezeExcitation(nn.Module):
    """Channel gate (Hu et al. 2018): x * sigmoid(MLP(mean of x over space)), per example.

    The MLP uses SiLU rather than ReLU, so no hidden unit can die and stop learning.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x):
        s = x.mean(dim=(2, 3))  # (B, C)
        gate = torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))  # (B, C)
        return x * gate[:, :, None, None]


class ResidualCell(nn.Module):
    """x + [SiLU, conv3x3, SiLU, conv3x3 (initialised small), optional squeeze-excitation](x).

    Keeps the shape (B, C, H, W). A new cell is close to the identity.
    """

    def __init__(self, channels: int, squeeze_excitation: bool = True):
        super().__init__()
        layers: list[nn.Module] = [
            nn.SiLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.SiLU(),
            scaled_init(nn.Conv2d(channels, channels, kernel_size=3, padding=1)),
        ]
        if squeeze_excitation:
            layers.append(SqueezeExcitation(channels))
        self.branch = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.branch(x)


def residual_stack(channels: int, n: int, squeeze_excitation: bool = True) -> nn.Sequential:
    """n residual cells in a row (an empty Sequential, i.e. the identity, when n == 0)."""
    return nn.Sequential(*(ResidualCell(channels, squeeze_excitation) for _ in range(n)))


class Downsample(nn.Module):
    """(B, C, H, W) -> (B, C, H/2, W/2) by a stride-2 3x3 convolution (H, W even)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """(B, C, H, W) -> (B, C, 2H, 2W): nearest-neighbour doubling, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
