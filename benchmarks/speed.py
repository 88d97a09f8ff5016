"""Training speed: the chapter's own loop against vaekit's Trainer, side by side in one run.

    python benchmarks/speed.py --data-dir ../shared/data/mnist --epochs 3 --rounds 2

For each network (the chapter's MLP VAE and its ConvVAE) the two loops alternate `--rounds`
times over the same dynamically binarized MNIST training set, batch 128, Adam 1e-3, the same
number of epochs. Printed: images/s of each (median over rounds), the ratio, and each model's
test negative ELBO (test set binarized once), so that speed is never bought with quality; the
training FLOP per image (counted by torch.utils.flop_counter on the chapter's network) and the
fraction of this machine's peak each loop reaches, the peak being a 2048^3 matrix product measured
in the same run (fp32 for the chapter's loop, the Trainer's precision for vaekit); the speed of a
step made of the network's matrix products and convolutions alone, in the Trainer's precision,
and its ratio to the chapter's loop: the most any loop could reach here; and, for the
MLP, the time of the importance-sampled NLL (k = 5000) extrapolated to the 10,000 test images.
The chapter's loop is its text: a DataLoader over the image tensor, sigmoid outputs, summed BCE.
With `--device cuda` both loops train on the GPU: the chapter's moves each batch there, vaekit's
Trainer keeps the whole training set on it.
"""

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from vaekit import VAE, ConvVAE
from vaekit.data import binarize_fixed, load_dataset
from vaekit.train import Trainer, TrainConfig


# ---- the chapter's code (section 28.3 and 28.4), with dynamic binarization added -------------
class ChapterVAE(nn.Module):
    def __init__(self, input_dim, latent_dim):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(input_dim, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
        self.fc_mu = nn.Linear(256, latent_dim)
        self.fc_logvar = nn.Linear(256, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                     nn.Linear(512, input_dim), nn.Sigmoid())

    def encode(self, x):
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decoder(self.reparameterize(mu, logvar)), mu, logvar


class ChapterConvVAE(ChapterVAE):
    def __init__(self, latent_dim=20):
        nn.Module.__init__(self)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU())
        self.fc_mu = nn.Linear(256, latent_dim)
        self.fc_logvar = nn.Linear(256, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, 64 * 7 * 7)
        self.decoder_net = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())

    def decoder(self, z):
        return self.decoder_net(self.decoder_input(z).view(-1, 64, 7, 7))


def vae_loss(x_recon, x, mu, logvar):
    recon = F.binary_cross_entropy(x_recon, x, reduction="sum")
    return recon + (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()))


def chapter_loop(model, images, epochs, flat, device, optimizer=None):
    model.to(device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    dataloader = torch.utils.data.DataLoader(images, batch_size=128, shuffle=True)
    for _ in range(epochs):
        for batch in dataloader:
            batch = batch.to(device)
            x = torch.bernoulli(batch.view(batch.size(0), -1) if flat else batch)
            x_recon, mu, logvar = model(x)
            loss = vae_loss(x_recon, x, mu, logvar)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


# ---- measurement ------------------------------------------------------------------------------
def sync(device) -> None:
    """Wait for the device's queued work, so that wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def test_nelbo(model, test, flat, samples=4):
    """Mean over test images of BCE + KL, one reparameterized sample, averaged over `samples` draws."""
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    torch.manual_seed(0)
    for _ in range(samples):
        for i in range(0, len(test), 1000):
            x = test[i:i + 1000].to(device)
            x = x.view(len(x), -1) if flat else x
            if isinstance(model, ChapterVAE):
                total += _chapter_nelbo(model, x)
            else:
                total += -model.elbo(x).sum().item()
    return total / (samples * len(test))


def _chapter_nelbo(model, x):
    mu, logvar = model.encode(x)
    x_recon = model.decoder(model.reparameterize(mu, logvar)).reshape(x.shape)
    return vae_loss(x_recon, x, mu, logvar).item()


def training_flop_per_image(model, images, flat) -> float:
    """Floating-point operations of one forward and backward pass per image, counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.bernoulli(images[:128].reshape(128, -1) if flat else images[:128])
    with FlopCounterMode(display=False) as counter:
        x_recon, mu, logvar = model(x)
        vae_loss(x_recon.reshape(x.shape), x, mu, logvar).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 128


def peak_gflops(dtype, device, size=2048, repeats=5) -> float:
    """GFLOP/s of a large matrix product in `dtype`: the practical peak of this machine right now."""
    a, b = torch.randn(size, size, device=device).to(dtype), torch.randn(size, size, device=device).to(dtype)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def products_only_images_per_s(model, flat, dtype, device, steps=60, batch=128) -> float:
    """Images/s of a training step that does nothing but the network's matrix products and
    convolutions (forward and backward, weights already in `dtype`, no activations, loss, noise
    or optimizer): an upper bound on the speed of any loop built on PyTorch's kernels for this
    network, precision, batch and machine."""
    net = copy.deepcopy(model).to(device, dtype)
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.ReLU, nn.Sigmoid)):
                setattr(module, name, nn.Identity())
    shape = (batch, 784) if flat else (batch, 1, 28, 28)
    xs = [torch.rand(shape, device=device).to(dtype) for _ in range(4)]
    if not flat:
        net = net.to(memory_format=torch.channels_last)
        xs = [x.to(memory_format=torch.channels_last) for x in xs]

    def step(x):
        net.zero_grad(set_to_none=True)
        mu, logvar = net.encode(x)
        net.decoder(mu + logvar).sum().backward()

    for i in range(5):
        step(xs[i % 4])
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(xs[i % 4])
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def nll_seconds(model, test, images, k=5000) -> float:
    """Seconds of the importance-sampled NLL (k samples) over `images` test images."""
    from vaekit.importance import importance_log_likelihood

    device = next(model.parameters()).device
    t0 = time.perf_counter()
    importance_log_likelihood(model, test[:images].reshape(images, -1).to(device), k=k)
    sync(device)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--networks", nargs="*", default=["mlp", "conv"])
    p.add_argument("--precision", default="auto", help="vaekit Trainer precision (auto: its default, fp32, bf16)")
    p.add_argument("--eval-images", type=int, default=100,
                   help="test images for the NLL (k=5000) timing of the MLP, extrapolated to 10,000 (0: skip)")
    p.add_argument("--compile", action="store_true", help="torch.compile vaekit's training step")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where both loops train (vaekit keeps the data set there)")
    args = p.parse_args()
    train = load_dataset("mnist", "train", data_dir=args.data_dir).x  # (60000, 1, 28, 28)
    test = binarize_fixed(load_dataset("mnist", "test", data_dir=args.data_dir).x, seed=0)
    n = args.epochs * len(train)
    device = torch.device(args.device)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    peaks = {name: peak_gflops(dtype, device) for name, dtype in dtypes.items()
             if name != "fp16" or device.type == "cuda"}
    print(json.dumps({"peak_gflops": {k: round(v) for k, v in peaks.items()}, "threads": torch.get_num_threads()}),
          flush=True)
    precision = Trainer(VAE(4, 2), TrainConfig(precision=args.precision, device=args.device)).precision  # 'auto' resolved
    for net in args.networks:
        flat = net == "mlp"
        speeds = {"chapter": [], "vaekit": [], "products_only": []}
        quality = {}
        for r in range(args.rounds):
            torch.manual_seed(r)
            chapter = ChapterVAE(784, 20) if flat else ChapterConvVAE(20)
            t0 = time.perf_counter()
            chapter_loop(chapter, train, args.epochs, flat, device)
            sync(device)
            speeds["chapter"].append(n / (time.perf_counter() - t0))
            torch.manual_seed(r)
            ours = VAE(784, 20) if flat else ConvVAE(20)
            config = TrainConfig(epochs=args.epochs, binarize=True, progress=False, seed=r,
                                 precision=args.precision, compile=args.compile, device=args.device)
            t0 = time.perf_counter()
            Trainer(ours, config).fit(train)
            sync(device)
            speeds["vaekit"].append(n / (time.perf_counter() - t0))
            speeds["products_only"].append(products_only_images_per_s(chapter, flat, dtypes[precision], device))
            if r == 0:
                quality = {"chapter": test_nelbo(chapter, test, flat), "vaekit": test_nelbo(ours, test, flat)}
        med = {k: statistics.median(v) for k, v in speeds.items()}
        flop = training_flop_per_image(ChapterVAE(784, 20) if flat else ChapterConvVAE(20), train, flat)  # on the CPU
        row = {"network": net, "device": str(device), "epochs": args.epochs, "rounds": args.rounds, "precision": precision,
               "compile": args.compile, "mflop_per_image": round(flop / 1e6, 2),
               "chapter_fp32_peak_fraction": round(med["chapter"] * flop / 1e9 / peaks["fp32"], 3),
               "vaekit_peak_fraction": round(med["vaekit"] * flop / 1e9 / peaks[precision], 3),
               "chapter_images_per_s": round(med["chapter"]), "vaekit_images_per_s": round(med["vaekit"]),
               "ratio": round(med["vaekit"] / med["chapter"], 2),
               "products_only_images_per_s": round(med["products_only"]),
               "products_only_ratio": round(med["products_only"] / med["chapter"], 2),
               "chapter_test_nelbo": round(quality["chapter"], 2), "vaekit_test_nelbo": round(quality["vaekit"], 2)}
        if flat and args.eval_images:
            seconds = nll_seconds(ours, test, args.eval_images)
            row["nll_k5000_seconds_per_10000_images"] = round(seconds * 10_000 / args.eval_images)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
