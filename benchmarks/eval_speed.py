"""Speed of the importance-sampled MNIST NLL (k = 5000) of the chapter's MLP VAE (784-512-256-20).

    python benchmarks/eval_speed.py --data-dir ../shared/data/mnist --model runs/mnist-vae
    python benchmarks/eval_speed.py --data-dir ../shared/data/mnist --epochs 10 --save runs/mnist-vae --limit 500
    python benchmarks/eval_speed.py --data-dir ../shared/data/mnist --model runs/mnist-vae --limit 500 \\
        --precision fp32 bf16 --pythae-python /tmp/pythae-venv/bin/python --pythae-limit 20

Times vaekit.evaluate on the first --limit test images (all 10,000 by default; binarized once with
seed 0, the Burda et al. protocol) at each --precision, and extrapolates to the full test set.
With --pythae-python (a separate environment with pythae installed; never the project's), the
same trained weights are copied into a pythae VAE with the same network and pythae's
`get_nll(data, n_samples=k)` is timed on the first --pythae-limit images, as users call it and
under torch.no_grad(), next to vaekit on those same images. Prints one JSON line.

With --flops the JSON also holds the work of the estimator as counted by
torch.utils.flop_counter (floating-point operations per importance sample and per image, the
total for k samples on all 10,000 test images) and the bf16 matrix-product rate this CPU reaches
on its threads, so that the shortest possible wall time of the full-test NLL can be read off:
`--model mnist-hvae --flops --limit 20 --k 100` answers in seconds.

With --head-blocks (models with an autoregressive pixel decoder) the estimator is timed,
alternating, with the decoder's evaluation head run in blocks of contexts (vaekit's way) and in
one pass over all of a chunk's samples, --rounds times each, with the median ratio:
`--model mnist-hvae-pixel --head-blocks --limit 4 --k 256 --threads 1`.

With --shared-encoder-work (hierarchical VAEs) the estimator is timed, alternating, with the
samples of one image sharing its encoder work (vaekit's way: the top posterior and the encoder's
half of every posterior convolution computed once per image) and with every sample's copy of the
encoder features run through the whole top-down pass, as before that change:
`--model mnist-hvae-long --shared-encoder-work --limit 4 --k 512 --threads 1`.

With --latent-densities (hierarchical VAEs) the estimator is timed, alternating, with vaekit's
latent Gaussians (GaussianMap: no argument checks, a log-density written from log sigma) and with
torch's checked Normal as they were before that change:
`--model mnist-hvae --latent-densities --limit 8 --k 1000 --precision bf16 --threads 2`.

Wall-clock seconds depend on what else the machine runs: the JSON also holds the process CPU
seconds and the load average at the start. On a machine whose cores are busy with other work, run
with OMP_WAIT_POLICY=PASSIVE (or --threads 1): OpenMP threads that spin while waiting for a
descheduled partner otherwise multiply both the CPU and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaekit import VAE, Trainer, TrainConfig, evaluate, load
from vaekit.data import binarize_fixed, load_dataset

FULL_TEST = 10_000

PYTHAE_SCRIPT = r"""
import json, sys, time
import torch, torch.nn as nn
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder

folder, k, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]))

class Encoder(BaseEncoder):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
        self.mu, self.logvar = nn.Linear(256, 20), nn.Linear(256, 20)

    def forward(self, x):
        h = self.net(x.reshape(x.shape[0], -1))
        return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))

class Decoder(BaseDecoder):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                 nn.Linear(512, 784), nn.Sigmoid())

    def forward(self, z):
        return ModelOutput(reconstruction=self.net(z).reshape(z.shape[0], 1, 28, 28))

state = torch.load(folder + "/weights.pt", weights_only=True)
names = {"encoder.0": "encoder.net.0", "encoder.2": "encoder.net.2", "fc_mu": "encoder.mu",
         "fc_logvar": "encoder.logvar", "decoder.0": "decoder.net.0", "decoder.2": "decoder.net.2",
         "decoder.4": "decoder.net.4"}
mapped = {}
for key, value in state.items():
    module, param = key.rsplit(".", 1)
    mapped[names[module] + "." + param] = value
model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce"),
            encoder=Encoder(), decoder=Decoder())
model.load_state_dict(mapped)
model.eval()
x = torch.load(folder + "/x.pt", weights_only=True)  # (n, 1, 28, 28), binary
out = {"n": len(x)}
torch.manual_seed(0)
t, c = time.perf_counter(), time.process_time()
out["nll_as_called"] = -float(model.get_nll(x, n_samples=k, batch_size=batch))
out["seconds_as_called"], out["cpu_seconds_as_called"] = time.perf_counter() - t, time.process_time() - c
torch.manual_seed(0)
t, c = time.perf_counter(), time.process_time()
with torch.no_grad():
    out["nll_no_grad"] = -float(model.get_nll(x, n_samples=k, batch_size=batch))
out["seconds_no_grad"], out["cpu_seconds_no_grad"] = time.perf_counter() - t, time.process_time() - c
print(json.dumps(out))
"""


def get_model(args):
    if args.model:
        return load(args.model)
    train = load_dataset("mnist", "train", data_dir=args.data_dir)
    torch.manual_seed(args.seed)
    model = VAE(784, 20)
    Trainer(model, TrainConfig(epochs=args.epochs, binarize=True, seed=args.seed, progress=False,
                                       precision="fp32")).fit(train)
    if args.save:
        model.save_pretrained(args.save)
    return model.eval()


def time_vaekit(model, x, k, precision, batch_size=None, seed=0):
    t, c = time.perf_counter(), time.process_time()
    report = evaluate(model, x, k=k, binarize=None, progress=False, precision=precision,
                      batch_size=batch_size, seed=seed)
    return {"nll": report["nll"], "nll_se": report["nll_se"], "nelbo": report["nelbo"],
            "seconds": report["nll_seconds"], "cpu_seconds": time.process_time() - c,
            "total_seconds": time.perf_counter() - t}


def flops_of(model, x, k):
    """Floating-point operations of log_weights on x with k samples (dense count, no pruning)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.log_weights(x, k=k)
    return counter.get_total_flops()


def work(model, x, k):
    """FLOPs per importance sample and per image (the part done once whatever k), and the
    total for k samples on the full test set."""
    x = x[:8]
    one, two = flops_of(model, x, 1), flops_of(model, x, 2)
    per_sample = (two - one) / len(x)
    per_image = one / len(x) - per_sample
    total = FULL_TEST * (per_image + k * per_sample)
    return {"mflop_per_sample": per_sample / 1e6, "mflop_per_image_once": per_image / 1e6,
            "pflop_full_test": total / 1e15}


def matmul_gflops(dtype=torch.bfloat16, n=2048, repeats=20):
    """The matrix-product rate (GFLOP/s) of this CPU on torch's threads: the ceiling of any estimator."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def alternate(model, x, k, precision, rounds, before: str, after: str, use) -> dict:
    """Seconds of the estimator `rounds` times each way, alternating: `use(name)` puts the code in
    the state `before` or `after` (vaekit's way, left in place at the end). Their medians, the
    speed-up of `after` and its NLL difference to `before`."""
    times, nll = {after: [], before: []}, {}
    try:
        for _ in range(rounds):
            for name in (before, after):
                use(name)
                r = time_vaekit(model, x, k, precision)
                times[name].append(r["seconds"])
                nll[name] = r["nll"]
    finally:
        use(after)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"seconds": times, "median_seconds": medians, "speedup": medians[before] / medians[after],
            "nll_difference": nll[after] - nll[before]}


def head_blocks(model, x, k, precision, rounds):
    """The pixel head in blocks of HEAD_CONTEXTS contexts against one pass (see `alternate`)."""
    from vaekit import pixel_likelihood

    blocked = pixel_likelihood.HEAD_CONTEXTS

    def use(name):
        pixel_likelihood.HEAD_CONTEXTS = blocked if name == "blocks" else 10**12

    return {**alternate(model, x, k, precision, rounds, "one_pass", "blocks", use), "head_contexts": blocked}


def draws_repeating_features(model, x, y, k, noise=None):
    """model.draws as it was before the samples of one image shared its encoder work: the
    features are copied once per sample and the whole top-down pass runs on the copies."""
    from vaekit.models.base import Draw
    from vaekit.models.hvae import repeat_samples

    feats = model.bottom_up(x)
    b = x.shape[0]
    per = max(1, model.max_eval_batch // b)
    for start in range(0, k, per):
        n = min(per, k - start)
        params, layers = model.top_down(feats=[repeat_samples(f, n) for f in feats])  # rows (n * B)
        z = model.join_code([layer.z for layer in layers]).view(n, b, -1)  # (n, B, total_latent_dim)
        log_q = sum(layer.q.log_prob(layer.z) for layer in layers).view(n, b)
        yield Draw(z, log_q, params=params, layers=layers)


def shared_encoder_work(model, x, k, precision, rounds):
    """The encoder work shared by the samples of an image against repeated per sample (see
    `alternate`; same seed, so the NLL difference is 0 up to float rounding)."""
    def use(name):
        if name == "repeated":
            model.draws = types.MethodType(draws_repeating_features, model)
        else:
            vars(model).pop("draws", None)

    return alternate(model, x, k, precision, rounds, "repeated", "shared", use)


def checked_normal_map(mu, log_sigma):
    """The latent Gaussian as it was before GaussianMap: torch's Normal with its argument checks."""
    from torch.distributions import Independent, Normal
    from vaekit.precision import full_precision

    return Independent(Normal(full_precision(mu), full_precision(log_sigma).exp()), 3)


def latent_densities(model, x, k, precision, rounds):
    """GaussianMap against torch's checked Normal (see `alternate`; same seed, so the NLL
    difference is 0 up to float rounding)."""
    from vaekit.models import hvae

    ours = hvae.GaussianMap

    def use(name):
        hvae.GaussianMap = checked_normal_map if name == "checked_normal" else ours

    return alternate(model, x, k, precision, rounds, "checked_normal", "gaussian_map", use)


def time_pythae(python, model, x, k, batch, threads):
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({key: v.detach().cpu() for key, v in model.state_dict().items()}, f"{tmp}/weights.pt")
        torch.save(x.reshape(-1, 1, 28, 28).contiguous(), f"{tmp}/x.pt")
        done = subprocess.run([python, "-c", PYTHAE_SCRIPT, tmp, str(k), str(batch), str(threads)],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pythae run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", help="a trained MLP VAE (run or model folder); else one is trained")
    p.add_argument("--epochs", type=int, default=10, help="epochs when training (default 10)")
    p.add_argument("--save", help="where to save a model trained here")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--limit", type=int, help="first N test images (default all 10,000)")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--batch-size", type=int, help="examples per pass for vaekit (default: its own choice)")
    p.add_argument("--pythae-python", help="python of a separate environment with pythae installed")
    p.add_argument("--pythae-limit", type=int, default=20, help="test images for the pythae comparison")
    p.add_argument("--pythae-batch", type=int, default=100, help="get_nll's batch_size (pythae's default 100)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head-blocks", action="store_true",
                   help="time the pixel decoder's blocked evaluation head against one pass (A/B, --rounds each)")
    p.add_argument("--shared-encoder-work", action="store_true",
                   help="time a hierarchical VAE's samples sharing their image's encoder work against "
                        "repeating it per sample (A/B, --rounds each)")
    p.add_argument("--latent-densities", action="store_true",
                   help="time a hierarchical VAE's latent Gaussians (GaussianMap) against torch's checked "
                        "Normal (A/B, --rounds each)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of an A/B comparison")
    p.add_argument("--flops", action="store_true",
                   help="also count the estimator's FLOPs and time this CPU's bf16 matrix products")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = get_model(args)
    test = load_dataset("mnist", "test", data_dir=args.data_dir)
    x = binarize_fixed(test.x, seed=0)[: args.limit]  # the same binary images whatever the limit
    n = len(x)
    result = {"benchmark": "eval_speed", "k": args.k, "n": n, "threads": torch.get_num_threads(),
              "load_average": os.getloadavg()[0]}
    if args.flops:
        w = work(model, x, args.k)
        w["bf16_matmul_gflops"] = matmul_gflops()
        w["minutes_full_test_at_matmul_rate"] = w["pflop_full_test"] * 1e6 / w["bf16_matmul_gflops"] / 60
        result["work"] = w
    if args.head_blocks or args.shared_encoder_work or args.latent_densities:
        for flag, name, compare in ((args.head_blocks, "head_blocks", head_blocks),
                                    (args.shared_encoder_work, "shared_encoder_work", shared_encoder_work),
                                    (args.latent_densities, "latent_densities", latent_densities)):
            if flag:
                result[name] = {precision: compare(model, x, args.k, precision, args.rounds)
                                for precision in args.precision}
        print(json.dumps(result))
        return
    for precision in args.precision:
        r = time_vaekit(model, x, args.k, precision, args.batch_size, args.seed)
        r["seconds_full_test_extrapolated"] = r["seconds"] * FULL_TEST / n
        result[precision] = r
    if "fp32" in result and "bf16" in result:
        result["bf16_minus_fp32_nll"] = result["bf16"]["nll"] - result["fp32"]["nll"]
        result["bf16_speedup"] = result["fp32"]["seconds"] / result["bf16"]["seconds"]
    if args.pythae_python:
        m = min(args.pythae_limit, n)
        ours = time_vaekit(model, x[:m], args.k, "fp32", args.batch_size, args.seed)
        theirs = time_pythae(args.pythae_python, model, x[:m], args.k, args.pythae_batch, torch.get_num_threads())
        result["pythae"] = {
            "n": m, "vaekit_fp32": ours, **theirs,
            "ratio_as_called": theirs["seconds_as_called"] / ours["seconds"],
            "ratio_no_grad": theirs["seconds_no_grad"] / ours["seconds"],
            "pythae_seconds_full_test_extrapolated": theirs["seconds_no_grad"] * FULL_TEST / m,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
