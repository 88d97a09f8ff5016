"""Run by tests/test_distributed.py under torchrun: a short training whose every rank saves its weights."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import vaekit
from vaekit.data import load_dataset
from vaekit.train import Trainer, TrainConfig

out = Path(sys.argv[1])
data = load_dataset("digits").subset(slice(0, 512))
torch.manual_seed(0)
model = vaekit.VAE(64, 4, hidden_dims=(32,), image_shape=(1, 8, 8))
trainer = Trainer(model, TrainConfig(epochs=2, batch_size=64, progress=False), out / "run")
trainer.fit(data)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"rank{trainer.rank}.safetensors"))
