"""Sample quality of a generative model, measured against held-out data on a feature network's
features (`vaekit.features`): Fréchet distance, KID, precision/recall and class coverage, with the
reference rows that say what the numbers mean:

    real data        training images against the test images: the floor no model goes below
    reconstructions  the model's reconstructions of the test images themselves: each reference
                     image has its own reconstruction beside it, so this pairing flatters
                     (recall above real data's); an optimistic bound
    reconstructions, training images
                     the model's reconstructions of the real-data row's training images: what
                     samples reach when the prior matches the training codes exactly (decoded
                     posterior means), the fair ceiling of a fitted prior

    rows = quality_rows(model, test, train=train)       # {"samples": {...}, "real data": {...}, ...}
    print(format_quality(rows))
"""

from __future__ import annotations

import torch

from .errors import InputError
from .features import FEATURE_SETS, FeatureNet, load_feature_net
from .metrics import class_coverage, frechet_distance, kernel_distance, precision_recall
from .models.core import inference
from .priors import without_fitted_prior

METRICS = ("fid", "kid", "precision", "recall", "coverage")


def feature_net_for(data_name: str, features=None) -> FeatureNet:
    """The feature network to judge samples of `data_name` with: `features` (a FeatureNet, a
    shipped name or a folder) or the shipped one named like the data."""
    if isinstance(features, FeatureNet):
        return features
    if features is None:
        if data_name not in FEATURE_SETS:
            raise InputError(f"vaekit ships no feature network for {data_name!r} (it has: {', '.join(FEATURE_SETS)}); "
                             f"train one with `vaekit features train --data {data_name} --out FOLDER` and pass it.")
        features = data_name
    return load_feature_net(features)


def compare(net: FeatureNet, real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> dict:
    """The metrics of images `fake` against images `real` on the features of `net`."""
    return compare_features(net, net.features(real), fake, seed)


def compare_features(net: FeatureNet, fr: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> dict:
    """`compare` with the real images' features `fr` (N, fc_dim) computed once for many rows."""
    ff, classes = net.features_and_classes(fake)
    kid, kid_se = kernel_distance(fr, ff, seed=seed)
    precision, recall = precision_recall(fr, ff)
    cover = class_coverage(classes, net.config.num_classes)
    return {"fid": frechet_distance(fr, ff), "kid": kid, "kid_se": kid_se, "precision": precision, "recall": recall,
            "coverage": cover["entropy"], "classes_seen": cover["classes_seen"], "n": len(fake),
            "features": f"vaekit's {net.name} classifier features"}


def generate(model, n: int, temperature: float = 1.0, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
    """n samples of `model` in [0, 1] on the CPU (classes in equal shares for a conditional model)."""
    from .runs import demo_labels

    torch.manual_seed(seed)
    labels = demo_labels(model, n)
    parts = []
    with inference(model):
        for i in range(0, n, batch_size):
            y = labels[i:i + batch_size] if labels is not None else None
            parts.append(model.sample(min(batch_size, n - i), y, temperature=temperature).float().cpu())
    return torch.cat(parts).clamp(0, 1)


def reconstructions(model, data, batch_size: int = 1000) -> torch.Tensor:
    """The model's reconstructions of `data`'s examples, in [0, 1] on the CPU."""
    y = data.y if model.conditional else None
    device = next(model.parameters()).device
    parts = []
    with inference(model):
        for i in range(0, len(data), batch_size):
            yb = y[i:i + batch_size].to(device) if y is not None else None
            parts.append(model.reconstruct(data.x[i:i + batch_size].to(device), yb).float().cpu())
    return torch.cat(parts).clamp(0, 1)


def quality_rows(model, test, train=None, n: int | None = None, features=None, temperature: float = 1.0,
                 seed: int = 0) -> dict[str, dict]:
    """Rows of metrics against the test images: the model's samples (n of them, default as many
    as the test images; with a fitted prior, also N(0, I) samples), its reconstructions of the
    test images and, given `train`, real training images."""
    if getattr(model, "image_shape", None) is None:
        raise InputError("Sample quality is measured on images; this model's examples are table rows.")
    net = feature_net_for(test.name, features)
    fr = net.features(test.x.float())  # (N, fc_dim), shared by every row
    n = n or len(test)

    def samples():
        return generate(model, n, temperature, seed).reshape(n, -1)

    fitted = getattr(model, "fitted_prior", None)
    if fitted is None:
        rows = {"samples": compare_features(net, fr, samples(), seed)}
    else:
        rows = {f"samples, {fitted.model_type} prior": compare_features(net, fr, samples(), seed)}
        with without_fitted_prior(model):
            rows["samples, N(0, I)"] = compare_features(net, fr, samples(), seed)
    rows["reconstructions"] = compare_features(net, fr, reconstructions(model, test).reshape(len(test), -1), seed)
    if train is not None:
        rows["reconstructions, training images"] = training_reconstructions(net, model, train, test, seed, fr)
        rows["real data"] = real_floor(net, train, test, seed, fr)
    return rows


def format_quality(rows: dict[str, dict]) -> str:
    """The rows as a table, the feature network named."""
    first = next(iter(rows.values()))
    lines = [f"Sample quality ({first['n']} images against the test set, on {first['features']}; lower FID/KID and "
             "higher precision/recall are better; coverage is the entropy of the predicted classes, 2.30 when "
             "all 10 are even):",
             f"  {'':<34}{'FID':>9}{'KID':>9}{'precision':>11}{'recall':>8}{'coverage':>10}"]
    for name, r in rows.items():
        lines.append(f"  {name:<34}{r['fid']:>9.2f}{r['kid']:>9.4f}{r['precision']:>11.3f}{r['recall']:>8.3f}"
                     f"{r['coverage']:>10.2f}")
    return "\n".join(lines)


def training_subset(train, test, seed: int = 0):
    """A random subset of the training images, as many as the test set (the same for one seed)."""
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:len(test)]
    return train.subset(pick)


def real_floor(net: FeatureNet, train, test, seed: int = 0, fr: torch.Tensor | None = None) -> dict:
    """Training images (as many as the test set) against the test images (features `fr` if given)."""
    fr = net.features(test.x.float()) if fr is None else fr
    return compare_features(net, fr, training_subset(train, test, seed).x.float(), seed)


def training_reconstructions(net: FeatureNet, model, train, test, seed: int = 0, fr: torch.Tensor | None = None) -> dict:
    """The model's reconstructions of real_floor's training images against the test images."""
    fr = net.features(test.x.float()) if fr is None else fr
    return compare_features(net, fr, reconstructions(model, training_subset(train, test, seed)), seed)
