"""ONNX export: the decoder (z -> mean of p(x|z)) and the encoder (x -> posterior parameters) as
graphs other runtimes read, with the noise kept out of the graph and a dynamic batch size. Each
graph is run with onnxruntime on the same inputs as PyTorch and the largest difference reported.

    from vaekit.export import export_onnx
    report = export_onnx(vaekit.load("mnist-mlp"), "exported/")   # decoder.onnx, encoder.onnx

Conditional models take the one-hot label as a second input. A VQ-VAE's decoder takes code
indices (B, h, w) and its encoder returns them; a flow's encoder gives the base Gaussian (the
flows need noise, which stays outside the graph); a hierarchical VAE's decoder takes the top code
with the lower groups at their prior means, and its encoder the top group's Gaussian.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .atomic import atomic_write_bytes
from .distributions import BernoulliLikelihood
from .errors import InputError
from .models.core import inference

TOLERANCE = 1e-5  # max abs difference (fp32) between onnxruntime and PyTorch that an export must meet
OPSET = 17


class _Decoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z, y=None):
        return self.model.decode(z, y) if self.model.conditional else self.model.decode(z)


class _Encoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y=None):
        out = self.model.encode(x, y) if self.model.conditional else self.model.encode(x)
        if isinstance(out, tuple):
            return tuple(t for t in out if t is not None)
        return out


def _examples(model, n: int = 3):
    """Inputs for tracing and checking: (decoder inputs, encoder inputs), labels one-hot."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, *model.data_shape, generator=gen)
    if isinstance(model.lik, BernoulliLikelihood):
        x = x.round()
    if model.capabilities.latent == "codes":
        codes = torch.randint(model.config.num_codes, (n, *model.grid_size), generator=gen)
        return (codes,), (x,)
    z = torch.randn(n, model.latent_dim, generator=gen)
    if model.conditional:
        y = torch.nn.functional.one_hot(torch.arange(n) % model.config.num_classes, model.config.num_classes).float()
        return (z, y), (x, y)
    return (z,), (x,)


def _export(module: nn.Module, inputs: tuple, names: list[str], outputs: list[str]) -> bytes:
    buf = io.BytesIO()
    axes = {name: {0: "batch"} for name in names + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notices: the check below is what counts
        torch.onnx.export(module, inputs, buf, input_names=names, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)
    return buf.getvalue()


def _check(graph: bytes, module: nn.Module, inputs: tuple, names: list[str]) -> float:
    """The largest absolute difference between onnxruntime and PyTorch on `inputs`, and on a batch of a
    different size (the batch dimension is dynamic)."""
    import onnxruntime as ort

    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (inputs, tuple(torch.cat([t, t[:1]]) for t in inputs)):
        expected = module(*batch)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {name: t.numpy() for name, t in zip(names, batch)})
        for e, g in zip(expected, got):
            worst = max(worst, float((e.float() - torch.from_numpy(g).float()).abs().max()))
    return worst


def export_onnx(model, folder) -> dict:
    """Write decoder.onnx and encoder.onnx into `folder`; returns {graph: max abs difference or the
    reason it could not be exported}. A graph that differs from PyTorch by more than TOLERANCE is
    not written."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InputError("ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime") from None
    folder = Path(folder)
    report: dict = {}
    dec_in, enc_in = _examples(model)
    codes = model.capabilities.latent == "codes"
    graphs = {
        "decoder": (_Decoder(model), dec_in, ["codes"] if codes else (["z", "y"] if model.conditional else ["z"]),
                    ["x_mean"]),
        "encoder": (_Encoder(model), enc_in, ["x", "y"] if model.conditional else ["x"],
                    ["codes"] if codes else (["z"] if model.capabilities.posterior == "point" else ["mu", "logvar"])),
    }
    if not model.lik.factorised:
        del graphs["decoder"]
        report["decoder"] = ("not exported: its autoregressive likelihood draws the pixels one at a time, "
                             "a loop a traced graph cannot hold")
    model = copy.deepcopy(model).float().cpu()  # the caller's model keeps its dtype and device
    with inference(model):
        for name, (module, inputs, names, outputs) in graphs.items():
            try:
                graph = _export(module, inputs, names, outputs)
                diff = _check(graph, module, inputs, names)
            except Exception as e:  # an operator ONNX lacks, a shape the tracer cannot follow, ...
                report[name] = f"not exported: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                continue
            if diff > TOLERANCE:
                report[name] = f"not exported: onnxruntime differs from PyTorch by {diff:.2e} (> {TOLERANCE:g})"
                continue
            atomic_write_bytes(folder / f"{name}.onnx", graph)
            report[name] = diff
    return report
