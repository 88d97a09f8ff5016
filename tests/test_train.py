"""The Trainer: exact resume, early stopping, files of a run, objectives."""

import json

import pytest
import torch

import vaekit
from vaekit.train import Trainer, TrainConfig


def small_vae():
    return vaekit.VAE(64, 4, hidden_dims=(32,), image_shape=(1, 8, 8))


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_continues_exactly(digits_data, tmp_path, ema):
    data = digits_data.subset(slice(0, 400))
    cfg = TrainConfig(epochs=4, batch_size=64, binarize=True, progress=False, seed=3, ema=ema)
    torch.manual_seed(0)
    straight = small_vae()
    Trainer(straight, cfg, tmp_path / "a").fit(data)

    torch.manual_seed(0)
    first = small_vae()
    Trainer(first, TrainConfig(**{**cfg.__dict__, "epochs": 2}), tmp_path / "b").fit(data)
    torch.manual_seed(123)  # a resumed process starts from a different global RNG state
    resumed = small_vae()
    Trainer(resumed, cfg, tmp_path / "b").fit(data, resume=True)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    rows = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


def test_weight_average_follows_its_closed_form():
    from vaekit.averaging import WeightAverage

    p = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([p], decay=0.5)
    expected = torch.zeros(3)
    for step, value in enumerate([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]):
        p.data.fill_(value)
        average.update(step)
        d = min(0.5, (1 + step) / (10 + step))  # the warmed-up decay
        expected = d * expected + (1 - d) * value
        assert torch.allclose(average.average[0], expected)
    with average.applied():
        assert torch.equal(p.data, average.average[0])
    assert torch.equal(p.data, torch.full((3,), 512.0))  # the trained weights come back


def test_weight_average_is_what_is_saved_and_returned(digits_data, tmp_path):
    data = digits_data.subset(slice(0, 256))
    cfg = TrainConfig(epochs=2, batch_size=64, progress=False, ema=0.9, lr=1e-2)
    torch.manual_seed(0)
    model = small_vae()
    trainer = Trainer(model, cfg, tmp_path)
    trainer.fit(data)
    for p, avg in zip(model.parameters(), trainer.average.average):
        assert torch.equal(p, avg)
    saved = vaekit.load(tmp_path)
    for a, b in zip(model.state_dict().values(), saved.state_dict().values()):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    plain = small_vae()
    Trainer(plain, TrainConfig(**{**cfg.__dict__, "ema": 0.0})).fit(data)  # the same steps, no average
    assert not torch.equal(next(plain.parameters()), next(model.parameters()))


def test_run_folder_contents_and_best_model(digits_data, tmp_path):
    train, val = digits_data.subset(slice(0, 300)), digits_data.subset(slice(300, 400))
    model = small_vae()
    history = Trainer(model, TrainConfig(epochs=3, progress=False), tmp_path).fit(train, val)
    assert len(history) == 3 and all("val_loss" in r and "train_kl" in r for r in history)
    for name in ("metrics.jsonl", "loss_curve.png", "train_config.json", "model/config.json", "checkpoint/state.json"):
        assert (tmp_path / name).exists(), name
    best = min(r["val_loss"] for r in history)
    loaded = vaekit.load(tmp_path)  # a run folder loads its best model
    assert loaded.config == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert history[-1]["val_loss"] >= best


def test_early_stopping(digits_data):
    train, val = digits_data.subset(slice(0, 200)), digits_data.subset(slice(200, 260))
    # a learning rate so high that validation stops improving quickly
    cfg = TrainConfig(epochs=50, lr=0.05, patience=2, progress=False)
    history = Trainer(small_vae(), cfg).fit(train, val)
    assert len(history) < 50


def test_warmup_raises_beta_linearly(digits_data):
    data = digits_data.subset(slice(0, 256))
    cfg = TrainConfig(epochs=4, batch_size=64, warmup_epochs=2, progress=False)
    history = Trainer(small_vae(), cfg).fit(data)
    betas = [r["beta"] for r in history]
    assert betas[0] == pytest.approx(3 / 8) and betas[1] == pytest.approx(7 / 8) and betas[-1] == 1.0


def test_saved_model_is_never_one_from_early_in_a_warmup(digits_data, tmp_path):
    """Losses under a smaller KL weight are smaller: the model saved after a warm-up is a full-weight epoch's."""
    data = digits_data.subset(slice(0, 256))
    model = small_vae()
    cfg = TrainConfig(epochs=3, batch_size=64, beta=8.0, warmup_epochs=2, lr=1e-6, progress=False)  # beta rules
    history = Trainer(model, cfg, tmp_path / "run").fit(data)
    assert history[0]["train_loss"] < history[-1]["train_loss"]  # the case a plain comparison gets wrong
    saved = vaekit.load(tmp_path / "run" / "model")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved.state_dict().values()))


def test_iwae_objective_trains(digits_data):
    data = digits_data.subset(slice(0, 256))
    model = small_vae()
    history = Trainer(model, TrainConfig(epochs=5, objective="iwae", k=5, progress=False)).fit(data)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert "train_iwae" in history[0]


def test_conditional_model_needs_labels(digits_data):
    model = vaekit.CVAE(64, 4, 10)
    with pytest.raises(vaekit.InputError, match="labels"):
        Trainer(model, TrainConfig(epochs=1, progress=False)).fit(digits_data.x)
    history = Trainer(model, TrainConfig(epochs=1, progress=False)).fit(digits_data)
    assert history[0]["train_loss"] > 0


def test_bad_values_are_refused_before_training(digits_data):
    x = digits_data.x.clone()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(vaekit.InputError, match="NaN"):
        Trainer(small_vae(), TrainConfig(epochs=1, progress=False)).fit(x)
    with pytest.raises(vaekit.InputError, match=r"\[0, 1\]"):
        Trainer(small_vae(), TrainConfig(epochs=1, progress=False)).fit(digits_data.x * 16)


def test_cosine_schedule_runs_from_lr_to_a_hundredth():
    from vaekit.train import learning_rate

    cfg = TrainConfig(lr=2e-3, lr_schedule="cosine")
    rates = [learning_rate(cfg, s, 11) for s in range(11)]
    assert rates[0] == pytest.approx(2e-3) and rates[-1] == pytest.approx(2e-5)
    assert rates[5] == pytest.approx(2e-3 * (0.01 + 0.99 * 0.5))
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate(TrainConfig(lr=2e-3), 7, 11) == 2e-3
    with pytest.raises(vaekit.InputError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_trapezoid_schedule_rises_holds_and_falls_to_zero():
    from vaekit.train import TRAPEZOID_FALL, TRAPEZOID_RISE, learning_rate

    cfg, total = TrainConfig(lr=3e-3, lr_schedule="trapezoid"), 1000
    rates = [learning_rate(cfg, s, total) for s in range(total)]
    rise, fall = int(TRAPEZOID_RISE * total), int((1 - TRAPEZOID_FALL) * total)
    assert 0 < rates[0] < rates[1] < rates[rise // 2] < 3e-3  # linear warm-up, the first step not wasted
    assert rates[rise // 2] == pytest.approx(3e-3 * (rise // 2 + 1) / rise)
    assert all(r == 3e-3 for r in rates[rise:fall])  # flat at lr in between
    assert all(a > b for a, b in zip(rates[fall + 1:], rates[fall + 2:]))  # then strictly down
    assert rates[-1] == 0.0 and rates[(fall + total) // 2] == pytest.approx(1.5e-3, rel=0.01)


def test_cosine_schedule_reaches_the_optimizer(digits_data, monkeypatch):
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    cfg = TrainConfig(epochs=2, batch_size=100, lr=1e-3, lr_schedule="cosine", progress=False)
    Trainer(small_vae(), cfg).fit(digits_data.subset(slice(0, 400)))
    assert len(seen) == 8 and seen[0] == pytest.approx(1e-3) and seen[-1] == pytest.approx(1e-5)


def test_trim_leaves_the_largest_losses_out_of_training_steps_only(digits_data):
    """TrainConfig.trim: a training step's loss is the mean of the smallest (1 - trim) share of the
    per-example losses; validation (eval mode) keeps them all."""
    from vaekit.objectives import StepOutput

    out = StepOutput(torch.tensor(4.0), {}, torch.tensor([1.0, 10.0, 2.0, 3.0])).trimmed(0.25)
    assert out.loss.item() == 2.0
    model = small_vae()
    trainer = Trainer(model, TrainConfig(trim=0.1, progress=False, precision="fp32"))
    x = digits_data.x[:100].float()
    model.train()
    step = trainer.objective(x, None, 1.0)
    kept = torch.sort(step.per_example).values[:90]
    assert torch.allclose(step.loss, kept.mean())
    model.eval()
    val = trainer.objective(x, None, 1.0)
    assert torch.allclose(val.loss, val.per_example.mean())
    with pytest.raises(vaekit.InputError, match="trim"):
        TrainConfig(trim=0.1, objective="iwae")
    with pytest.raises(vaekit.InputError, match="trim"):
        TrainConfig(trim=1.0)
