"""Denoising MNIST test images: PSNR of the noisy input, a plain VAE and a denoising VAE.

    python benchmarks/denoise.py --data-dir ../shared/data/mnist --picture docs/images/mnist_denoising.png

Protocol. The 10,000 MNIST test images (or the first --test-limit) are corrupted once (noise
seed 0) by each of: Gaussian noise sigma 0.3 and 0.5 (clipped to [0, 1]) and salt-and-pepper
noise on 20% of the pixels. Two kinds of model, the same architecture (--model: the chapter's
ConvVAE with 20 latents by default, or the MLP VAE 784-512-256-20; Bernoulli likelihood on grey
levels) and training budget (Adam 1e-3, batch 128), trained on the 60,000 training images: a
plain VAE on clean images, and a denoising VAE (TrainConfig(corrupt=...): corrupted inputs,
clean targets) for each noise, trained on that noise (--dvae-noise matched) or on one given
noise for all. Denoising = decode the posterior mean of the noisy image.
PSNR is the mean over images of the per-image PSNR in dB (vaekit.psnr); the PSNR of the set's
pooled MSE ("global") is printed beside it. Prints a table and a final JSON line; with
--picture, a grid of clean / noisy / plain / denoising-VAE rows for each noise.
"""

import argparse
import json
import time

import torch

from vaekit import ConvVAE, VAE, Trainer, TrainConfig, denoise, psnr
from vaekit.corruption import corrupt
from vaekit.data import load_dataset

NOISES = "gaussian:0.3,gaussian:0.5,salt-pepper:0.2"


def make_model(kind, latent_dim):
    return VAE(784, latent_dim, image_shape=(1, 28, 28)) if kind == "vae" else ConvVAE(latent_dim)


def train(kind, latent_dim, data, epochs, beta, seed, noise=""):
    torch.manual_seed(seed)
    model = make_model(kind, latent_dim)
    t0 = time.perf_counter()
    Trainer(model, TrainConfig(epochs=epochs, beta=beta, seed=seed, corrupt=noise, progress=False,
                                      precision="fp32")).fit(data)
    print(f"  trained {'denoising VAE (' + noise + ')' if noise else 'plain VAE'} in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--epochs", type=int, default=5, help="training epochs of every model (default 5)")
    p.add_argument("--model", choices=["vae", "conv"], default="conv", help="ConvVAE (default) or the MLP VAE")
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--beta", type=float, default=1.0, help="KL weight of every model (default 1)")
    p.add_argument("--noises", default=NOISES, help=f"comma-separated corruptions to test (default {NOISES})")
    p.add_argument("--dvae-noise", default="matched",
                   help="what the denoising VAE trains on: 'matched' (one per test noise, default) or one SPEC")
    p.add_argument("--train-limit", type=int, help="train on the first N training images only")
    p.add_argument("--test-limit", type=int, help="test on the first N test images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--picture", help="write a PNG of clean / noisy / plain / denoising rows here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train_data = load_dataset("mnist", "train", data_dir=args.data_dir, limit=args.train_limit)
    clean = load_dataset("mnist", "test", data_dir=args.data_dir, limit=args.test_limit).x
    noises = [n.strip() for n in args.noises.split(",") if n.strip()]
    print(f"{args.model} models, latent {args.latent_dim}, beta {args.beta:g}, {args.epochs} epochs on "
          f"{len(train_data)} images; {len(clean)} test images", flush=True)

    t0 = time.perf_counter()
    plain = train(args.model, args.latent_dim, train_data, args.epochs, args.beta, args.seed)
    dvaes = {}
    for noise in noises:
        spec = noise if args.dvae_noise == "matched" else args.dvae_noise
        if spec not in dvaes:
            dvaes[spec] = train(args.model, args.latent_dim, train_data, args.epochs, args.beta, args.seed, spec)
    seconds = time.perf_counter() - t0

    results, picture_rows, labels = {}, [], []
    for noise in noises:
        noisy = corrupt(clean, noise, torch.Generator().manual_seed(0))
        dvae = dvaes[noise if args.dvae_noise == "matched" else args.dvae_noise]
        outs = {"noisy": noisy, "plain": denoise(plain, noisy), "denoising": denoise(dvae, noisy)}
        res = {k: round(psnr(clean, v), 2) for k, v in outs.items()}
        res.update({f"{k}_global": round(psnr(clean, v, reduction="global"), 2) for k, v in outs.items()})
        res["gain_db"] = round(res["denoising"] - res["noisy"], 2)
        results[noise] = res
        picture_rows += [clean[:10], noisy[:10], outs["plain"][:10], outs["denoising"][:10]]
        labels += ["clean", noise, "plain VAE", "denoising VAE"]

    print(f"\nPSNR (dB, mean of per-image PSNR; pooled-MSE PSNR in brackets), {len(clean)} MNIST test images:")
    print(f"  {'noise':<18} {'noisy input':>16} {'plain VAE':>16} {'denoising VAE':>16} {'gain':>7}")
    for noise, r in results.items():
        cells = [f"{r[k]:6.2f} ({r[k + '_global']:5.2f})" for k in ("noisy", "plain", "denoising")]
        print(f"  {noise:<18} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} {r['gain_db']:+7.2f}")
    print(f"  training {seconds:.0f} s")
    if args.picture:
        from vaekit.plots import save_image_grid

        grid = torch.stack([r.reshape(len(r), -1) for r in picture_rows])  # (rows, 10, 784)
        print(f"  picture {save_image_grid(grid, args.picture, image_shape=(1, 28, 28), row_labels=labels)}")
    print(json.dumps({"benchmark": "denoise", "model": args.model, "latent_dim": args.latent_dim, "beta": args.beta,
                      "epochs": args.epochs, "train_images": len(train_data), "test_images": len(clean),
                      "dvae_noise": args.dvae_noise, "psnr": results, "train_seconds": round(seconds)}))


if __name__ == "__main__":
    main()
