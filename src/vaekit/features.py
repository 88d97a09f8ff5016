"""Feature networks for sample-quality metrics: small image classifiers whose penultimate layer
gives the feature vectors that FID, KID and precision/recall compare.

Standard FID uses Inception-v3 weights downloaded from the internet, which vaekit cannot assume.
It ships its own classifiers instead, one per bundled data set (`FEATURE_SETS`), trained by

    vaekit features train --data mnist --out src/vaekit/pretrained_features/mnist

(the same command trains one for a user's labelled data). Metrics on them are named for what they
are, "classifier FID on vaekit's mnist features", and are not comparable with published FIDs.

    net = load_feature_net("mnist")
    f = net.features(images)      # (B, fc_dim)
    labels = net.predict(images)  # (B,)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .configs import validate
from .errors import InputError
from .io import save_pretrained

FEATURES_DIR = Path(__file__).parent / "pretrained_features"


@dataclass
class FeatureNetConfig:
    image_shape: tuple[int, ...] = (1, 28, 28)  # (channels, height, width) of the images it takes
    num_classes: int = 10
    channels: tuple[int, ...] = (32, 64)  # channels of each stage (two 3x3 convolutions, then 2x2 pooling)
    fc_dim: int = 128  # size of the feature vector (the penultimate layer)
    data_name: str = ""  # what it was trained on, for the metric's name

    def __post_init__(self):  # config.json gives lists
        self.image_shape, self.channels = tuple(self.image_shape), tuple(self.channels)


class FeatureNet(nn.Module):
    """A small convolutional classifier; `features(x)` is its penultimate layer (after ReLU)."""

    model_type = "feature_net"
    config_class = FeatureNetConfig

    def __init__(self, config: FeatureNetConfig | None = None, **kwargs):
        super().__init__()
        config = config or FeatureNetConfig(**kwargs)
        validate(config)
        if len(config.image_shape) != 3:
            raise InputError(f"image_shape must be (channels, height, width), got {config.image_shape}.")
        self.config = config
        c, h, w = config.image_shape
        layers = []
        for width in config.channels:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
            c = width
            if min(h, w) >= 4:  # pool while the map is large enough
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c * h * w, config.fc_dim)
        self.head = nn.Linear(config.fc_dim, config.num_classes)
        # features are multiplied by this so that their mean square is 1 on the training images (set
        # by `calibrate`): KID's kernel (x.y / D + 1)^3 then sees values of order 1, as with Inception's
        self.register_buffer("feature_scale", torch.ones(()))

    @property
    def name(self) -> str:
        return self.config.data_name or "custom"

    def config_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self.config)

    def save_pretrained(self, folder) -> None:
        save_pretrained(self, folder)

    def _images(self, x) -> torch.Tensor:
        """x as a (B, C, H, W) float batch; uint8 pixels are divided by 255."""
        x = torch.as_tensor(x)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        shape = tuple(self.config.image_shape)
        if x.dim() < 2 or math.prod(x.shape[1:]) != math.prod(shape):
            raise InputError(f"This feature network ({self.name}) takes images of shape {shape}, got a batch "
                             f"of shape {tuple(x.shape)}; use a feature network trained on images of this size.")
        return x.reshape(len(x), *shape)  # (B, C, H, W)

    def _hidden(self, x):
        return F.relu(self.fc(self.convs(x).flatten(1)))  # (B, fc_dim)

    def forward(self, x):
        """Class logits (B, num_classes)."""
        return self.head(self._hidden(self._images(x)))

    @torch.no_grad()
    def features(self, x, batch_size: int = 250) -> torch.Tensor:
        """Penultimate-layer features (B, fc_dim) times `feature_scale`, float32, in eval mode."""
        return self.features_and_classes(x, batch_size)[0]

    @torch.no_grad()
    def features_and_classes(self, x, batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
        """`features` (B, fc_dim) and the predicted class of each image (B,), from one pass
        (batches of 250 stay in the CPU's cache: about 2x faster than 1,000 here)."""
        x = self._images(x)
        self.eval()
        hidden = torch.cat([self._hidden(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])  # (B, fc_dim)
        return hidden * self.feature_scale, self.head(hidden).argmax(1)

    @torch.no_grad()
    def calibrate(self, x) -> None:
        """Set `feature_scale` so that the features of images x have mean square 1."""
        self.feature_scale.fill_(1.0)
        self.feature_scale.fill_(float(self.features(x).pow(2).mean().rsqrt()))

    @torch.no_grad()
    def predict(self, x, batch_size: int = 250) -> torch.Tensor:
        """Predicted class of each image (B,)."""
        return self.features_and_classes(x, batch_size)[1]


def train_feature_net(train, test=None, epochs: int = 5, batch_size: int = 128, lr: float = 1e-3,
                      seed: int = 0, say=None) -> tuple[FeatureNet, float | None]:
    """Train a FeatureNet on a labelled image Dataset (random shifts of up to 2 pixels as
    augmentation); (net, test accuracy or None)."""
    if train.y is None or train.num_classes is None:
        raise InputError(f"A feature network is trained on labelled images; {train.name} has no labels.")
    if train.x.dim() != 4:
        raise InputError(f"A feature network is trained on images (N, C, H, W); {train.name} has examples of "
                         f"shape {tuple(train.x.shape[1:])}.")
    torch.manual_seed(seed)
    net = FeatureNet(FeatureNetConfig(image_shape=tuple(train.x.shape[1:]), num_classes=train.num_classes,
                                      data_name=train.name))
    x, y = net._images(train.x), train.y.long()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        start, net = time.perf_counter(), net.train()
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            xb = _shift(x[idx], gen)
            loss = F.cross_entropy(net.head(net._hidden(xb)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if say is not None:
            acc = accuracy(net, test) if test is not None else None
            say(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}" + (f", test accuracy {acc:.4f}" if acc else "")
                + f" ({time.perf_counter() - start:.0f} s)")
    net.eval().calibrate(x)
    return net, (accuracy(net, test) if test is not None else None)


def _shift(x: torch.Tensor, gen: torch.Generator, most: int = 2) -> torch.Tensor:
    """The batch shifted by one random offset of up to `most` pixels each way (wrapping around the
    border, which is background in these data sets); small images are left as they are."""
    dy, dx = (int(v) for v in torch.randint(-most, most + 1, (2,), generator=gen))
    return torch.roll(x, (dy, dx), dims=(2, 3)) if min(x.shape[2:]) > 4 * most else x


def accuracy(net: FeatureNet, data) -> float:
    return float((net.predict(data.x) == data.y).float().mean())


def load_feature_net(name_or_folder) -> FeatureNet:
    """A shipped feature network by data set name (FEATURE_SETS) or one saved in a folder."""
    from .loading import load_module

    folder = FEATURES_DIR / str(name_or_folder)
    if not folder.is_dir():
        folder = Path(name_or_folder)
        if not folder.is_dir():
            raise InputError(f"No feature network {name_or_folder!r}: give one of {', '.join(FEATURE_SETS)} or a "
                             "folder written by `vaekit features train`.")
    return load_module(folder, {FeatureNet.model_type: FeatureNet}, "feature network")


FEATURE_SETS = tuple(sorted(d.name for d in FEATURES_DIR.iterdir() if d.is_dir())) if FEATURES_DIR.is_dir() else ()
