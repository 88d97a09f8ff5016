"""What every model has, whatever its latent: a config, declared capabilities, a data shape,
input handling and saving. `BaseVAE` (continuous latents) and `VQVAE` (codes) stand on it."""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager

import torch
import torch.nn as nn

from ..capabilities import Capabilities
from ..configs import validate
from ..errors import InputError, InputTypeError
from ..io import save_pretrained


class Model(nn.Module):
    """A vaekit model: `config` (a dataclass saved as config.json), `capabilities`, `data_shape`."""

    model_type = ""
    config_class: type = None
    capabilities = Capabilities()
    _trusted = False  # True inside trusted_inputs(model): the caller checked the data once

    def __init__(self, config):
        super().__init__()
        validate(config)  # types and ranges, before any network is built
        self.config = config

    def output_bias(self) -> torch.Tensor | None:
        """The decoder's last bias when it holds one parameter per decoded value and the model's init
        asks for it to start at the data's mean (else None)."""
        return None

    @torch.no_grad()
    def init_output_bias(self, x) -> None:
        """Set output_bias so that the untrained decoder predicts the mean of the examples `x` for
        every code (a data-dependent init for a fresh model; nothing for decoders without one)."""
        bias = self.output_bias()
        if bias is not None:
            mean = self.check_input(x).float().mean(0).flatten()  # (D,)
            bias.copy_(self.lik.constant_params(mean))

    @property
    def conditional(self) -> bool:
        """True when encode/decode/sample take class labels y."""
        return self.capabilities.conditional

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one example as the networks take it, e.g. (784,) or (1, 28, 28)."""
        raise NotImplementedError

    # ---- input handling --------------------------------------------------------------------
    def as_batch(self, x) -> torch.Tensor:
        """x as a float batch of shape (B, *data_shape); accepts flat or image layouts."""
        return self._batch(x)[0]

    def check_input(self, x) -> torch.Tensor:
        """as_batch plus finiteness and likelihood-support checks (even for trusted inputs); raises InputError."""
        x = self.as_batch(x)
        self.lik.check(x)
        return x

    def _batch(self, x):
        """(batch, single): x shaped (B, *data_shape) in the weights' dtype, and whether it was one
        unbatched example. uint8 values are pixels (divided by 255). Unless the caller checked the
        data already (`trusted_inputs`), values must be finite and in the likelihood's support."""
        if not torch.is_tensor(x):
            try:
                x = torch.as_tensor(x)
            except (TypeError, ValueError, RuntimeError) as e:
                raise InputTypeError(f"Expected an array of numbers, got {type(x).__name__} ({e}).") from None
        if x.dtype == torch.bool or not (torch.is_floating_point(x) or x.dtype in _INTEGERS):
            raise InputTypeError(f"Expected numbers, got a tensor of {x.dtype}; give float or integer values.")
        dtype = self._anchor().dtype
        x = x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)
        shape, size = self.data_shape, math.prod(self.data_shape)
        image = tuple(getattr(self, "image_shape", None) or ())
        if x.shape == shape or (x.numel() == size and (x.dim() == 1 or tuple(x.shape) == image)):
            x, single = x.reshape(1, *shape), True
        elif x.dim() >= 2 and math.prod(x.shape[1:]) == size:
            x, single = x.reshape(x.shape[0], *shape), False
        else:
            raise InputError(
                f"Expected examples of shape {tuple(shape)} ({size} values each), got a tensor of shape "
                f"{tuple(x.shape)}; reshape the data or build the model for this size."
            )
        if x.shape[0] == 0:
            raise InputError("The batch is empty; give at least one example.")
        if not self._trusted:
            self.lik.check(x)
        return x, single

    def _anchor(self) -> torch.Tensor:
        """A parameter, for the device and dtype of the weights."""
        return next(self.parameters())

    # ---- saving ----------------------------------------------------------------------------
    def save_pretrained(self, folder) -> None:
        """Write `config.json` and `model.safetensors` into `folder`, atomically."""
        save_pretrained(self, folder)

    @classmethod
    def from_pretrained(cls, path, map_location="cpu"):
        """Load a saved model (a folder, a run folder or a pretrained name); called on a family's
        class, anything else is an error: `VAE.from_pretrained("mnist-mlp")`."""
        from ..loading import load

        return load(path, map_location=map_location, expect=cls if cls.model_type else None)

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)


class FlatShape:
    """`data_shape` (input_dim,) and `image_shape` (the config's, None for table rows) of a model
    whose examples are flat vectors."""

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.config.input_dim,)

    @property
    def image_shape(self):
        return self.config.image_shape


class ImageShape:
    """`data_shape` and `image_shape` of a model for images: (in_channels, *image_size) of its config."""

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.config.in_channels, *self.config.image_size)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.data_shape


_INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@contextmanager
def trusted_inputs(model: nn.Module):
    """Inside, the model skips its per-call finiteness and support checks: for loops (training,
    evaluation) that checked all their data once before starting."""
    before = getattr(model, "_trusted", False)
    model._trusted = True
    try:
        yield model
    finally:
        model._trusted = before


@contextmanager
def inference(model: nn.Module):
    """Eval mode and no gradients inside; the model's training mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)
