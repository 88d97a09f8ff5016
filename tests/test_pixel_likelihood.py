"""The autoregressive Bernoulli likelihood: causal, normalised, sampled from the distribution it
scores, and inside the hierarchical VAE as a saved, scored, trainable decoder."""

import itertools

import pytest
import torch
from sklearn.datasets import load_digits

import vaekit
from vaekit.errors import InputError
from vaekit.models.hvae import HierarchicalVAE
from vaekit.pixel_likelihood import ConditionalPixelCNN, PixelCNNBernoulli


def random_net(in_channels=1, context=3, channels=8, window=5, seed=0) -> ConditionalPixelCNN:
    """A net with weights large enough that every tap matters."""
    torch.manual_seed(seed)
    net = ConditionalPixelCNN(in_channels, context, channels, window)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.4)
    return net


def test_each_logit_depends_only_on_the_pixels_before_it():
    net, (h, w) = random_net(window=5), (6, 5)
    x = (torch.rand(1, 1, h, w) < 0.5).float().requires_grad_()
    logits = net(x, torch.randn(1, 3, h, w)).flatten()  # raster order
    for p in range(h * w):
        (grad,) = torch.autograd.grad(logits[p], x, retain_graph=True)
        grad = grad.flatten()
        assert grad[p:].abs().max() == 0, p  # nothing at or after p
        i, j = divmod(p, w)
        window = [a * w + b for a in range(i - 2, i + 1) for b in range(j - 2, j + 3)
                  if 0 <= a and 0 <= b < w and a * w + b < p]
        reads = torch.nonzero(grad).flatten().tolist()
        assert sorted(reads) == window, p  # every earlier pixel of the 5 x 5 window, and only those


def test_probabilities_of_all_images_sum_to_one():
    """A 2 x 3 binary image has 64 values; their probabilities under the likelihood sum to 1."""
    net, (h, w) = random_net(), (2, 3)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=h * w))).reshape(-1, 1, h, w)  # (64, 1, 2, 3)
    context = torch.randn(1, 3, h, w).expand(len(images), -1, -1, -1)
    log_p = PixelCNNBernoulli(net, context).log_prob(images)  # (64,)
    assert torch.logsumexp(log_p.double(), 0).exp().item() == pytest.approx(1.0, abs=1e-5)


def test_samples_follow_the_scored_distribution():
    """Ancestral samples of a 2 x 2 image land in each of the 16 images as often as log_prob says."""
    net, n = random_net(seed=1), 20000
    context = torch.randn(1, 3, 2, 2).expand(n, -1, -1, -1)
    dist = PixelCNNBernoulli(net, context)
    torch.manual_seed(0)
    x, probs = dist.sample_with_probs()
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # the probabilities recorded on the way are those of one parallel pass over the sample
    torch.testing.assert_close(probs, torch.sigmoid(dist.logits(x)), atol=1e-6, rtol=0)
    index = (x.flatten(1) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()  # raster bits -> 0..15
    freq = torch.bincount(index, minlength=16).double() / n
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).reshape(16, 1, 2, 2)
    p = PixelCNNBernoulli(net, context[:16]).log_prob(images).double().exp()
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 5 * se + 1e-4).all(), (freq, p)


def test_multichannel_images_and_leading_batch_dims():
    net = random_net(in_channels=3, context=6)
    context = torch.randn(4, 2, 6, 5, 5)  # (n, B, K, H, W)
    dist = PixelCNNBernoulli(net, context)
    assert dist.batch_shape == (4, 2) and dist.event_shape == (3, 5, 5)
    x = (torch.rand(2, 3, 5, 5) < 0.5).float()  # broadcast over the n samples
    log_p = dist.log_prob(x)
    assert log_p.shape == (4, 2)
    flat = PixelCNNBernoulli(net, context.reshape(8, 6, 5, 5)).log_prob(x.repeat(4, 1, 1, 1))
    torch.testing.assert_close(log_p.reshape(8), flat)
    assert dist.sample().shape == (4, 2, 3, 5, 5)


def tiny(**kwargs):
    settings = dict(image_size=8, groups_per_scale=(1, 1), hidden_channels=8, latent_channels=2,
                    pixel_window=3, pixel_channels=8)
    settings.update(kwargs)
    return HierarchicalVAE(**settings)


def test_hvae_with_a_pixel_decoder_scores_saves_and_learns(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    x = (torch.tensor(load_digits().images[:16]) > 8).float().unsqueeze(1)  # (16, 1, 8, 8) binary digits
    # importance weights: log p(x|z) from the autoregressive likelihood of the same draw
    torch.manual_seed(1)
    draw = next(iter(model.draws(x, None, 3)))
    expected = model.lik(draw.params, 3).log_prob(x.repeat(3, 1, 1, 1)).view(3, 16)
    torch.testing.assert_close(model.log_px(draw, x), expected)
    # saved and loaded exactly, the pixel network included
    model.save_pretrained(tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    assert loaded.config.pixel_window == 3
    torch.manual_seed(2)
    a = model.log_weights(x, k=4)
    torch.manual_seed(2)
    torch.testing.assert_close(loaded.log_weights(x, k=4), a)
    # a few steps lower the loss; decode gives probabilities of the right shape
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(x).loss.item()
    for _ in range(30):
        opt.zero_grad()
        model.loss(x).loss.backward()
        opt.step()
    assert model.loss(x).loss.item() < first - 10
    samples = model.eval().sample(3)
    assert samples.shape == (3, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1


def test_pixel_decoder_needs_binary_pixels():
    with pytest.raises(InputError, match="bernoulli"):
        tiny(likelihood="gaussian")
    for bad in (-1, 1, 4):
        with pytest.raises(InputError, match="pixel_window"):
            tiny(pixel_window=bad)


def test_onnx_export_keeps_the_encoder_and_says_why_not_the_decoder(tmp_path):
    from vaekit.export import TOLERANCE, export_onnx

    report = export_onnx(tiny(), tmp_path)
    assert report["encoder"] <= TOLERANCE and (tmp_path / "encoder.onnx").exists()
    assert "autoregressive" in report["decoder"] and not (tmp_path / "decoder.onnx").exists()


def test_cli_trains_a_pixel_decoder_and_refuses_bad_windows(tmp_path, capsys):
    from vaekit.cli import main

    out = tmp_path / "run"
    argv = ["train", "--model", "hvae", "--pixel-window", "3", "--likelihood", "bernoulli", "--epochs", "1",
            "--limit", "64", "--fit-prior", "none", "--out", str(out), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "bernoulli-pixelcnn likelihood" in said
    assert "then measuring sample quality (an autoregressive decoder draws pixel by pixel: minutes)" in said
    assert vaekit.load(out).config.pixel_window == 3 and (out / "samples.png").exists()
    for bad in (["--pixel-window", "4", "--likelihood", "bernoulli"], ["--pixel-window", "3"]):  # digits: gaussian
        assert main([*argv[:3], *bad, "--epochs", "1", "--limit", "64", "--out", str(tmp_path / "bad"),
                     "--no-progress"]) == 2
        assert "pixel_window" in capsys.readouterr().err


def test_models_saved_before_the_pixel_fields_load_with_independent_pixels(tmp_path):
    import json

    model = tiny(pixel_window=0)
    model.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    meta = json.loads(path.read_text())
    for name in ("pixel_window", "pixel_channels"):
        del meta["config"][name]
    path.write_text(json.dumps(meta))
    loaded = vaekit.load(tmp_path / "old")
    assert loaded.config.pixel_window == 0 and loaded.lik.name == "bernoulli"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


@pytest.mark.parametrize("x_shape", [(2, 3, 5, 5), (4, 2, 3, 5, 5), (1, 2, 3, 5, 5)])
def test_evaluation_in_blocks_scores_as_one_pass(monkeypatch, x_shape):
    """Without gradients the contexts are scored a few at a time (3 here, over 7 x 2 of them):
    the same log-probabilities, whether x broadcasts over the samples or has its own per sample."""
    import vaekit.pixel_likelihood as pixel

    net = random_net(in_channels=3, context=6)
    context = torch.randn(7 if x_shape[0] != 4 else 4, 2, 6, 5, 5)  # (n, B, K, H, W)
    x = (torch.rand(x_shape) < 0.5).float()
    one_pass = PixelCNNBernoulli(net, context).log_prob(x).detach()  # gradients on: one pass
    monkeypatch.setattr(pixel, "HEAD_CONTEXTS", 3)
    with torch.no_grad():
        blocks = PixelCNNBernoulli(net, context).log_prob(x)
        flat = PixelCNNBernoulli(net, context[:, 0]).log_prob(x[..., 0, :, :, :] if len(x_shape) == 5 else x[0])
    assert blocks.shape == one_pass.shape == context.shape[:2]
    torch.testing.assert_close(blocks, one_pass, atol=1e-5, rtol=0)
    torch.testing.assert_close(flat, one_pass[:, 0], atol=1e-5, rtol=0)  # a (B,) batch blocked along B
