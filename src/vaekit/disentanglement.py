"""Disentanglement scores of codes against known generative factors, following disentanglement_lib's
definitions and defaults except where a line below says otherwise.

Every score reads codes (N, D) (a model's posterior means, `model_codes`) and factor indices
(N, K) of the same examples. Where disentanglement_lib samples observations with one factor held
fixed, these draw examples of the data with that factor's value, which on a full factor grid (such
as dSprites) is the same distribution; so the scores also work on a user's data with factors.

- `mig`: the mutual information gap (Chen et al. 2018): posterior means discretised into 20
  equal-width bins per code; for each factor the gap between the two codes most informative of it,
  over the factor's entropy; averaged over factors.
- `factorvae_score` (Kim & Mnih 2018): codes divided by their standard deviation over the data, codes
  with a standard deviation under 0.05 pruned as collapsed (the paper prunes collapsed
  dimensions; the threshold is vaekit's choice); each vote fixes one factor in a batch of 64 and
  names the code of least variance; a majority-vote classifier maps codes to factors; the score is
  its accuracy on 5000 fresh votes.
- `betavae_score` (Higgins et al. 2017): the mean absolute difference of the codes of 64 pairs that
  share one factor, a logistic regression predicting which factor; its accuracy on 5000 fresh points.
- `dci` (Eastwood & Williams 2018): gradient-boosted trees predicting each factor from the codes;
  the importance of each code for each factor gives disentanglement (each code explains one
  factor) and completeness (each factor is explained by one code), the trees' test accuracy the
  informativeness.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError

NUM_BINS = 20  # disentanglement_lib's discretisation of codes for MIG
PRUNE_STD = 0.05  # FactorVAE: codes whose standard deviation is below this are collapsed
BATCH = 64  # examples per vote (FactorVAE) and pairs per point (BetaVAE)
NUM_TRAIN, NUM_EVAL = 10000, 5000  # points (votes, examples) to fit and to score on
METRICS = ("mig", "factorvae", "betavae", "dci")


def _arrays(codes, factors) -> tuple[np.ndarray, np.ndarray]:
    codes = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    factors = factors.detach().cpu().numpy() if isinstance(factors, torch.Tensor) else np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 2:
        raise InputError(f"Codes {codes.shape} and factors {factors.shape} must be (N, D) and (N, K) of the same "
                         "N >= 2 examples.")
    if codes.shape[1] < 2:
        raise InputError("Disentanglement scores compare codes with each other; the model needs 2 or more latent "
                         "dimensions.")
    return codes.astype(np.float64), factors.astype(np.int64)


def _subsample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` example indices drawn uniformly (without replacement when there are enough)."""
    return rng.choice(n, size, replace=size > n)


def discretize(codes: np.ndarray, bins: int = NUM_BINS) -> np.ndarray:
    """Each code column mapped to 1..bins over equal-width bins spanning its range, (N, D) int."""
    out = np.empty(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram(codes[:, d], bins)[1][:-1]
        out[:, d] = np.digitize(codes[:, d], edges)
    return out


def mutual_information(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(code_d; factor_k) in nats for every pair, (D, K)."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factors[:, k], discrete_codes[:, d]) for k in range(factors.shape[1])]
                     for d in range(discrete_codes.shape[1])])


def mig(codes, factors, num_train: int = NUM_TRAIN, seed: int = 0) -> dict:
    """The mutual information gap over `num_train` examples: {'mig', 'per_factor', 'mutual_information'}."""
    codes, factors = _arrays(codes, factors)
    pick = _subsample(len(codes), num_train, np.random.default_rng(seed))
    mi = mutual_information(discretize(codes[pick]), factors[pick])  # (D, K)
    entropy = np.array([_entropy(factors[pick, k]) for k in range(factors.shape[1])])
    top = np.sort(mi, axis=0)[::-1]  # (D, K): each factor's codes, most informative first
    per_factor = np.where(entropy > 0, (top[0] - top[1]) / np.maximum(entropy, 1e-12), 0.0)
    return {"mig": float(per_factor.mean()), "per_factor": per_factor.tolist(), "mutual_information": mi.tolist()}


def _entropy(values: np.ndarray) -> float:
    """The entropy of a discrete variable's empirical distribution, in nats."""
    p = np.bincount(values) / len(values)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


class FactorSampler:
    """Examples drawn with one factor at a given value and the others as the data has them."""

    def __init__(self, factors: np.ndarray, seed: int = 0):
        self.factors = factors
        self.rng = np.random.default_rng(seed)
        self.order, self.start, self.count = [], [], []
        for k in range(factors.shape[1]):
            order = np.argsort(factors[:, k], kind="stable")  # examples grouped by factor k's value
            count = np.bincount(factors[:, k])
            self.order.append(order)
            self.start.append(np.concatenate([[0], np.cumsum(count)[:-1]]))
            self.count.append(count)

    def with_value(self, k: int, values: np.ndarray) -> np.ndarray:
        """One example index per entry of `values` whose factor k has that value."""
        offset = (self.rng.random(len(values)) * self.count[k][values]).astype(np.int64)
        return self.order[k][self.start[k][values] + offset]

    def rows(self, k: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Example indices shaped like `values` (n, m): entry (i, j) has factor k[i] at values[i, j]."""
        out = np.empty(values.shape, dtype=np.int64)
        for f in np.unique(k):
            chosen = k == f
            out[chosen] = self.with_value(f, values[chosen].ravel()).reshape(-1, values.shape[1])
        return out


def factorvae_score(codes, factors, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL, batch: int = BATCH,
                    seed: int = 0) -> dict:
    """The FactorVAE score: {'factorvae' (eval accuracy), 'train_accuracy', 'active_dims'}."""
    codes, factors = _arrays(codes, factors)
    sampler = FactorSampler(factors, seed)
    std = codes[_subsample(len(codes), NUM_TRAIN, sampler.rng)].std(axis=0, ddof=1)
    active = std >= PRUNE_STD
    if not active.any():
        return {"factorvae": 0.0, "train_accuracy": 0.0, "active_dims": 0}
    scaled = codes[:, active] / std[active]  # (N, A)

    def votes(n: int) -> tuple[np.ndarray, np.ndarray]:
        k = sampler.rng.integers(factors.shape[1], size=n)  # (n,) the fixed factor of each vote
        value = factors[sampler.rng.integers(len(factors), size=n), k]  # (n,) its value, as often as the data has it
        index = sampler.rows(k, np.repeat(value[:, None], batch, axis=1))  # (n, batch)
        local = scaled[index].var(axis=1, ddof=1)  # (n, A)
        return local.argmin(axis=1), k

    dims, k = votes(num_train)
    table = np.zeros((int(active.sum()), factors.shape[1]), dtype=np.int64)
    np.add.at(table, (dims, k), 1)
    classifier = table.argmax(axis=1)  # each active code -> the factor it votes for most
    train_accuracy = table.max(axis=1).sum() / num_train
    dims, k = votes(num_eval)
    return {"factorvae": float((classifier[dims] == k).mean()), "train_accuracy": float(train_accuracy),
            "active_dims": int(active.sum())}


def betavae_score(codes, factors, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL, batch: int = BATCH,
                  seed: int = 0) -> dict:
    """The BetaVAE score: {'betavae' (eval accuracy), 'train_accuracy'}."""
    from sklearn.linear_model import LogisticRegression

    codes, factors = _arrays(codes, factors)
    sampler = FactorSampler(factors, seed)

    def points(n: int) -> tuple[np.ndarray, np.ndarray]:
        k = sampler.rng.integers(factors.shape[1], size=n)  # (n,) the shared factor of each point
        first = sampler.rng.integers(len(codes), size=(n, batch))  # (n, batch) one side of each pair
        value = factors[first, k[:, None]]  # (n, batch): the shared factor's value in each pair
        second = sampler.rows(k, value)  # (n, batch) the other side, sharing that value
        return np.abs(codes[first] - codes[second]).mean(axis=1), k  # (n, D), (n,)

    x, k = points(num_train)
    model = LogisticRegression(max_iter=1000).fit(x, k)
    x_eval, k_eval = points(num_eval)
    return {"betavae": float(model.score(x_eval, k_eval)), "train_accuracy": float(model.score(x, k))}


def dci(codes, factors, num_train: int = NUM_TRAIN, num_test: int = NUM_EVAL, seed: int = 0) -> dict:
    """DCI: {'disentanglement', 'completeness', 'informativeness' (test accuracy), 'informativeness_train',
    'importance' (D, K)} from one scikit-learn GradientBoostingClassifier per factor (its impurity
    feature importances), as disentanglement_lib computes it.

    The trees grow one per class and boosting round, so a factor with many values is slow: on
    dSprites' 40 orientations and 32 positions with 10,000 training codes of 10 dimensions, about
    five minutes per model on two cores; `num_train` trades that time for precision.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    codes, factors = _arrays(codes, factors)
    rng = np.random.default_rng(seed)
    pick = _subsample(len(codes), num_train + num_test, rng)
    train, test = pick[:num_train], pick[num_train:]
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    train_acc, test_acc = [], []
    for k in range(factors.shape[1]):
        if len(np.unique(factors[train, k])) < 2:  # a constant factor: nothing to predict
            train_acc.append(1.0), test_acc.append(1.0)
            continue
        trees = GradientBoostingClassifier(random_state=seed).fit(codes[train], factors[train, k])
        importance[:, k] = np.abs(trees.feature_importances_)
        train_acc.append(trees.score(codes[train], factors[train, k]))
        test_acc.append(trees.score(codes[test], factors[test, k]))
    return {"disentanglement": dci_disentanglement(importance), "completeness": dci_completeness(importance),
            "informativeness": float(np.mean(test_acc)), "informativeness_train": float(np.mean(train_acc)),
            "importance": importance.tolist()}


def _normalized_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of the distributions along `axis` of non-negative weights p, in units of log(size)."""
    p = p + 1e-11
    p = p / p.sum(axis=axis, keepdims=True)
    return -(p * np.log(p)).sum(axis=axis) / np.log(p.shape[axis])


def dci_disentanglement(importance: np.ndarray) -> float:
    """Sum over codes of (1 - entropy of its importance over factors), weighted by the code's share of importance."""
    if importance.shape[1] < 2:
        return 1.0
    per_code = 1 - _normalized_entropy(importance, axis=1)
    weights = importance.sum(axis=1) / importance.sum() if importance.sum() > 0 else np.full(len(importance),
                                                                                            1 / len(importance))
    return float((per_code * weights).sum())


def dci_completeness(importance: np.ndarray) -> float:
    """Sum over factors of (1 - entropy of its importance over codes), weighted by the factor's share."""
    per_factor = 1 - _normalized_entropy(importance, axis=0)
    weights = importance.sum(axis=0) / importance.sum() if importance.sum() > 0 else np.full(importance.shape[1],
                                                                                            1 / importance.shape[1])
    return float((per_factor * weights).sum())


def scores(codes, factors, metrics=METRICS, seed: int = 0, dci_train: int = NUM_TRAIN) -> dict:
    """The chosen `metrics` (names in METRICS) of codes against factors, one dict each by name;
    dci_train: DCI's training codes (its test codes are half as many)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError(f"Unknown disentanglement metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}.")
    run = {"mig": mig, "factorvae": factorvae_score, "betavae": betavae_score,
           "dci": lambda c, f, seed: dci(c, f, num_train=dci_train, num_test=max(1, dci_train // 2), seed=seed)}
    return {name: run[name](codes, factors, seed=seed) for name in metrics}


# ---- a model's codes ------------------------------------------------------------------------

MIN_INFORMATION = 0.05  # nats: a code carrying less about every factor is called inactive


def evaluate_disentanglement(model, data, metrics=METRICS, seed: int = 0, dci_train: int = NUM_TRAIN) -> dict:
    """The scores of `model`'s posterior means on `data` (a Dataset with factors), and for each latent
    dimension the factor it is most informative of: {"mig": {...}, ..., "latent_factors": [...]}."""
    from .priors.fit import model_codes

    if data.factors is None:
        raise InputError(f"Data {data.name!r} has no generative factors; use dsprites or an .npz file with "
                         "`factors` (N, K) and `factor_names`.")
    codes, _ = model_codes(model, data)
    result = scores(codes, data.factors, metrics, seed, dci_train)
    information = np.array((result.get("mig") or mig(codes, data.factors, seed=seed))["mutual_information"])
    spread = codes.double().std(dim=0).numpy()
    result["latent_factors"] = latent_factors(information, data.factor_names, spread)
    result["factor_names"] = list(data.factor_names)
    result["examples"] = len(data)
    return result


def latent_factors(information: np.ndarray, names, spread: np.ndarray) -> list[dict]:
    """Per latent dimension: the factor of most mutual information, or None for a collapsed code (a
    standard deviation over the data under PRUNE_STD, or under MIN_INFORMATION nats about every factor)."""
    out = []
    for d, row in enumerate(information):
        k = int(row.argmax())
        active = row[k] >= MIN_INFORMATION and spread[d] >= PRUNE_STD
        out.append({"dim": d, "factor": names[k] if active else None, "mutual_information": float(row[k]),
                    "std": float(spread[d])})
    return out


def factor_traversal_labels(latent: list[dict]) -> list[str]:
    """Row labels of a traversal of every latent dimension: 'z3: x (1.21 nats)' or 'z3: inactive'."""
    return [f"z{d['dim']}: {d['factor']} ({d['mutual_information']:.2f} nats)" if d["factor"] else f"z{d['dim']}: inactive"
            for d in latent]


def format_disentanglement(result: dict) -> str:
    """The scores as a few lines of text."""
    lines = []
    if "mig" in result:
        per = ", ".join(f"{n} {v:.3f}" for n, v in zip(result["factor_names"], result["mig"]["per_factor"]))
        lines.append(f"MIG              {result['mig']['mig']:.3f}   (per factor: {per})")
    if "factorvae" in result:
        r = result["factorvae"]
        lines.append(f"FactorVAE score  {r['factorvae']:.3f}   ({r['active_dims']} active dimensions)")
    if "betavae" in result:
        lines.append(f"BetaVAE score    {result['betavae']['betavae']:.3f}")
    if "dci" in result:
        r = result["dci"]
        lines.append(f"DCI              disentanglement {r['disentanglement']:.3f}, completeness {r['completeness']:.3f}, "
                     f"informativeness {r['informativeness']:.3f}")
    lines.append("latent dimensions: " + "; ".join(factor_traversal_labels(result["latent_factors"])))
    return "\n".join(lines)
