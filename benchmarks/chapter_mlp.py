"""The chapter's program as a user would run it: its MLP VAE and training loop (sections 28.3-28.4,
with dynamic binarization), then 16 samples from N(0, I) drawn as its 4 x 4 figure (section 28.6).

    python benchmarks/chapter_mlp.py --data-dir ../shared/data/mnist --epochs 10 --out /tmp/chapter

Writes OUT/weights.safetensors and OUT/samples.png. With `--test-every-epoch` it also writes
OUT/epochs.jsonl: after each epoch, the training seconds so far (evaluation excluded) and the test
negative ELBO (test set binarized once, seed 0), and stops at the first epoch at or below
`--stop-at` nats; `benchmarks/train_process.py` times this program against `vaekit train`.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from speed import ChapterVAE, chapter_loop, test_nelbo
from vaekit.data import binarize_fixed, load_dataset


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for the weights and the figure")
    p.add_argument("--test-every-epoch", action="store_true", help="test -ELBO after each epoch (time excluded)")
    p.add_argument("--stop-at", type=float, default=0.0, help="with --test-every-epoch: stop at this test -ELBO")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("mnist", "train", data_dir=args.data_dir).x  # (60000, 1, 28, 28) in [0, 1]
    torch.manual_seed(args.seed)
    model = ChapterVAE(784, 20)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    if args.test_every_epoch:
        test = binarize_fixed(load_dataset("mnist", "test", data_dir=args.data_dir).x, seed=0)
        seconds = 0.0
        with open(out / "epochs.jsonl", "w") as log:
            for epoch in range(1, args.epochs + 1):
                t0 = time.perf_counter()
                model.train()
                chapter_loop(model, train, 1, True, torch.device("cpu"), optimizer)
                seconds += time.perf_counter() - t0
                rng = torch.get_rng_state()  # test_nelbo seeds its own draws; training's stream goes on after it
                nelbo = test_nelbo(model, test, True)
                torch.set_rng_state(rng)
                log.write(json.dumps({"epoch": epoch, "train_seconds": round(seconds, 2),
                                      "test_nelbo": round(nelbo, 3)}) + "\n")
                log.flush()
                if nelbo <= args.stop_at:
                    break
    else:
        chapter_loop(model, train, args.epochs, True, torch.device("cpu"), optimizer)
    save_file(model.state_dict(), str(out / "weights.safetensors"))
    model.eval()
    with torch.no_grad():  # section 28.6, saved instead of shown
        generated = model.decoder(torch.randn(16, 20))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(4, 4, figsize=(8, 8))
    for i, ax in enumerate(axes.flat):
        ax.imshow(generated[i].view(28, 28), cmap="gray")
        ax.axis("off")
    fig.savefig(out / "samples.png")


if __name__ == "__main__":
    main()
