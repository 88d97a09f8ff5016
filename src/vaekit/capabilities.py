"""What a model can do, declared by its class instead of discovered from its methods.

Every model class carries a `capabilities` attribute; code that treats families differently
(the Trainer, the evaluator, the CLI, the fast likelihood path) reads it and nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

POSTERIORS = ("gaussian", "flow", "hierarchical", "point", "discrete")


@dataclass(frozen=True)
class Capabilities:
    """Declared abilities of a model family.

    conditional:        encode/decode/sample take class labels y.
    denoising:          `loss(x, target=clean)` scores the decoder on a separate target.
    latent:             'vector' (z is a flat code of `latent_dim` values) or 'codes' (a grid of indices).
    posterior:          the form of q(z|x): 'gaussian' (diagonal), 'flow', 'hierarchical', 'point'
                        (a deterministic code) or 'discrete' (a codebook index).
    mlp_decoder:        `decoder_params(z, y) == decoder(decoder_input(z, y))` with `decoder` a
                        Linear/ReLU stack: the importance sampler may run it pruned.
    likelihood:         log p(x) can be importance-sampled (`log_weights` exists).
    needs_dataset_size: the loss estimates a data-set-level quantity and needs the number of
                        training examples before training (`model.set_dataset_size(n)`).
    """

    conditional: bool = False
    denoising: bool = True
    latent: str = "vector"
    posterior: str = "gaussian"
    mlp_decoder: bool = False
    likelihood: bool = True
    needs_dataset_size: bool = False

    def __post_init__(self):
        if self.latent not in ("vector", "codes"):
            raise ValueError(f"latent must be 'vector' or 'codes', not {self.latent!r}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, not {self.posterior!r}")

    def replace(self, **changes) -> "Capabilities":
        """A copy with some fields changed: what a subclass declares on top of its parent."""
        return dataclasses.replace(self, **changes)

