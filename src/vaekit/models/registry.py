"""The one registry of model families: what `--model NAME`, `vaekit.load` and the tests know.

Each family file registers its class with `@register(...)`, saying in one place what data it
takes, which constructor options the command line exposes and how small an instance can be:

    @register(summary="the chapter's MLP", data="flat", tiny={"hidden_dims": (32,)})
    class VAE(BaseVAE):
        model_type = "vae"
        ...

`build_model(name, data_shape, ...)` sizes a family for a data set; `FAMILIES[name].cls` is the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

DATA_KINDS = ("flat", "image")  # flat: any example flattened (MLPs); image: (C, H, W) only


@dataclass(frozen=True)
class Option:
    """A constructor option the command line exposes as `flag`, stored in the config's `field`."""

    flag: str  # e.g. "--flow-length"
    field: str  # e.g. "flow_length"
    type: type
    help: str
    choices: tuple | None = None

    @property
    def dest(self) -> str:
        """The argparse attribute of the flag."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Family:
    """A registered model family."""

    name: str  # the model_type: saved in config.json, given as --model
    cls: type
    summary: str  # a few words for `--model` help
    data: str = "flat"  # 'flat' or 'image' (see DATA_KINDS)
    uses_latent_dim: bool = True  # False: the latent size follows from the architecture (--latent-dim unused)
    options: tuple[Option, ...] = ()
    tiny: dict = field(default_factory=dict)  # options of a small instance on 8x8 images (tests, smoke runs)

    def build(self, data_shape, num_classes=None, latent_dim: int = 20, likelihood: str = "bernoulli", **options):
        """A fresh model of this family for examples of `data_shape` ((C, H, W) or (D,))."""
        shape = tuple(data_shape)
        kwargs: dict[str, Any] = {"likelihood": likelihood, **options}
        if self.data == "image":
            if len(shape) != 3:
                raise InputError(f"--model {self.name} needs images (C, H, W), but the data are table rows of "
                                 f"{shape[0]} values; use --model vae.")
            kwargs.update(in_channels=shape[0], image_size=shape[1:])
        else:
            kwargs.update(input_dim=math.prod(shape), image_shape=shape if len(shape) == 3 else None)
        if self.uses_latent_dim:
            kwargs["latent_dim"] = latent_dim
        if self.cls.capabilities.conditional:
            if not num_classes:
                raise InputError(f"--model {self.name} needs labelled data (a data set with classes, or y in the .npz file).")
            kwargs["num_classes"] = num_classes
        return self.cls(config=self.cls.config_class(**kwargs))

    def tiny_model(self, likelihood: str = "bernoulli"):
        """A small instance for 8x8 single-channel images with 10 classes and 4 latent dimensions."""
        return self.build((1, 8, 8), 10, 4, likelihood, **self.tiny)


FAMILIES: dict[str, Family] = {}


def register(summary: str, data: str = "flat", uses_latent_dim: bool = True, options: tuple[Option, ...] = (),
             tiny: dict | None = None):
    """Class decorator: make a model family buildable, loadable and testable by its `model_type`."""
    if data not in DATA_KINDS:
        raise ValueError(f"data must be one of {DATA_KINDS}, not {data!r}")

    def add(cls):
        name = cls.model_type
        if not name or name in FAMILIES:
            raise ValueError(f"model_type {name!r} is empty or already registered")
        FAMILIES[name] = Family(name, cls, summary, data, uses_latent_dim, tuple(options), dict(tiny or {}))
        return cls

    return add


def families() -> dict[str, Family]:
    """Every registered family by name."""
    from . import families as _  # noqa: F401  (every family file registers itself on import)

    return FAMILIES


def family(name: str) -> Family:
    """The registered family called `name`, or an InputError listing them."""
    from . import families  # noqa: F401  (every family file registers itself on import)

    if name not in FAMILIES:
        raise InputError(f"Unknown model {name!r}; choose one of {', '.join(FAMILIES)}.")
    return FAMILIES[name]


def build_model(name: str, data_shape, num_classes=None, latent_dim: int = 20, likelihood: str = "bernoulli", **options):
    """A fresh model of family `name` for examples of `data_shape` ((C, H, W) or (D,))."""
    return family(name).build(data_shape, num_classes, latent_dim, likelihood, **options)


def cli_options() -> dict[str, tuple[Option, list[str]]]:
    """Every family option by flag, with the families that take it (flags are shared by name)."""
    from . import families  # noqa: F401

    out: dict[str, tuple[Option, list[str]]] = {}
    for fam in FAMILIES.values():
        for opt in fam.options:
            if opt.flag in out and out[opt.flag][0] != opt:
                raise ValueError(f"{opt.flag} is declared differently by two families")
            out.setdefault(opt.flag, (opt, []))[1].append(fam.name)
    return out
