"""VQ-VAE: the vector quantizer, the PixelCNN prior and the model, end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from sklearn.datasets import load_digits

import vaekit.io
from vaekit.models.pixelcnn import PixelCNN
from vaekit.models.vqvae import VQVAE, train_prior
from vaekit.quantize import VectorQuantizer, usage_stats

TINY = dict(image_size=8, channels=(16,), res_blocks=1, num_codes=16, code_dim=8,
            prior_channels=16, prior_layers=3, prior_kernel=3)


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits scaled to [0, 1], (256, 1, 8, 8)."""
    data = load_digits().data[:256] / 16.0
    return torch.tensor(data, dtype=torch.float32).reshape(-1, 1, 8, 8)


def autoencoder_params(model):
    return [p for name, p in model.named_parameters() if not name.startswith("prior_net.")]


def set_codebook(q: VectorQuantizer, codes: torch.Tensor) -> None:
    """Put given codes into a quantizer, keeping its EMA state consistent with them."""
    with torch.no_grad():
        q.codebook.copy_(codes)
        q.cluster_size.fill_(1.0)
        q.embed_sum.copy_(codes)


# ---- the quantizer ---------------------------------------------------------------------------

def test_straight_through_gradient_reaches_encoder(digits):
    model = VQVAE(**TINY)
    out = model.loss(digits[:32])
    # The reconstruction term alone: its only path to the encoder is the straight-through estimator.
    out.terms["reconstruction"].mean().backward()
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_quantized_values_are_codes_and_gradient_is_identity():
    q = VectorQuantizer(8, 3, kmeans_init=False).eval()
    z = torch.randn(5, 4, 3, requires_grad=True)
    out = q(z)
    assert out.indices.shape == (5, 4) and out.commitment.shape == (5,)
    assert torch.allclose(out.quantized, q.codebook[out.indices], atol=1e-6)
    out.quantized.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


def test_ema_moves_used_codes_toward_their_assigned_means():
    q = VectorQuantizer(8, 4, decay=0.8, kmeans_init=False, dead_code_threshold=0)
    z = torch.randn(256, 4) * 2 + 1
    before = q.codebook.clone()
    q.eval()
    q(z)
    assert torch.equal(q.codebook, before), "eval mode must not change the codebook"
    q.train()
    indices = q(z).indices
    used = indices.unique()
    assert len(used) > 1
    for k in used:
        target = z[indices == k].mean(0)
        assert (q.codebook[k] - target).norm() < (before[k] - target).norm()


def clustered_data(n=600, dim=4, clusters=8, offset=5.0):
    centers = torch.randn(clusters, dim) * 3 + offset
    return centers[torch.randint(clusters, (n,))] + 0.3 * torch.randn(n, dim)


def quantization_error(q, x):
    q.eval()
    return (x - q.codebook[q.assign(x)]).pow(2).sum(-1).mean()


def test_kmeans_init_is_in_data_range_and_beats_random_init():
    x = clustered_data()
    kmeans = VectorQuantizer(8, 4, kmeans_init=True, dead_code_threshold=0)
    assert not kmeans.initialized
    kmeans.train()
    kmeans(x)
    assert kmeans.initialized
    assert (kmeans.codebook >= x.min(0).values).all() and (kmeans.codebook <= x.max(0).values).all()
    random = VectorQuantizer(8, 4, kmeans_init=False)
    assert quantization_error(kmeans, x) < 0.5 * quantization_error(random, x)


def test_initialized_flag_is_saved_and_stops_a_second_kmeans(monkeypatch):
    x = clustered_data()
    q = VectorQuantizer(8, 4).train()
    q(x)
    state = q.state_dict()
    assert "initialized" in state and bool(state["initialized"])
    fresh = VectorQuantizer(8, 4)
    fresh.load_state_dict(state)

    def fail(*args):
        raise AssertionError("k-means ran again on a restored quantizer")

    monkeypatch.setattr(fresh, "_kmeans_init", fail)
    fresh.train()(x)


def test_dead_codes_are_reseeded_from_the_batch():
    q = VectorQuantizer(8, 2, decay=0.5, kmeans_init=False, dead_code_threshold=1.0)
    codes = torch.full((8, 2), -10.0) + torch.arange(8.0)[:, None] * 0.01
    codes[0] = 10.0
    set_codebook(q, codes)
    x = 10 + 0.1 * torch.randn(64, 2)
    q.train()
    out = q(x)
    assert (out.indices == 0).all(), "the setup should send every vector to code 0"
    # Codes 1..7 were never used: their EMA usage fell to 0.5 < 1, so each is now a batch vector.
    for k in range(1, 8):
        assert torch.cdist(q.codebook[k : k + 1], x).min() < 1e-5, k
    assert (q.codebook[1:] > 5).all()
    assert q(x).used_fraction > 1 / 8


def test_perplexity_and_used_fraction_match_a_hand_computation():
    q = VectorQuantizer(4, 2, kmeans_init=False).eval()
    set_codebook(q, torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0], [0.0, -5.0]]))
    counts = [3, 1, 0, 4]
    x = torch.cat([q.codebook[k].expand(c, 2) for k, c in enumerate(counts)]) + 0.01 * torch.randn(8, 2)
    out = q(x)
    assert torch.bincount(out.indices, minlength=4).tolist() == counts
    p = [c / 8 for c in counts if c]
    by_hand = math.exp(-sum(pi * math.log(pi) for pi in p))
    assert out.perplexity.item() == pytest.approx(by_hand, rel=1e-6)
    assert out.used_fraction.item() == pytest.approx(0.75)
    perplexity, used = usage_stats(torch.tensor([5, 5, 5, 5]))
    assert perplexity.item() == pytest.approx(4.0) and used.item() == 1.0


def test_codebook_loss_mode_trains_the_codebook_by_gradient():
    q = VectorQuantizer(8, 3, decay=None, kmeans_init=False)
    assert isinstance(q.codebook, torch.nn.Parameter)
    out = q.train()(torch.randn(4, 5, 3))
    assert (out.codebook > 0).all()
    out.loss.sum().backward()
    assert q.codebook.grad.abs().sum() > 0


# ---- the PixelCNN prior ----------------------------------------------------------------------

def test_pixelcnn_logits_depend_only_on_earlier_positions():
    K, H, W = 6, 5, 6
    net = PixelCNN(K, channels=8, layers=3, kernel_size=3)
    codes = torch.randint(K, (2, H, W))
    logits = net.logits(codes).reshape(2, K, H * W)
    for p in range(H * W):
        changed = codes.clone().reshape(2, H * W)
        changed[:, p:] = (changed[:, p:] + torch.randint(1, K, changed[:, p:].shape)) % K
        new = net.logits(changed.reshape(2, H, W)).reshape(2, K, H * W)
        assert torch.allclose(new[..., : p + 1], logits[..., : p + 1], atol=1e-6), p
    # No blind spot: (i, j) sees its left neighbour, the code above, and the one above-right.
    i, j = 2, 2
    for a, b in [(i, j - 1), (i - 1, j), (i - 1, j + 1)]:
        changed = codes.clone()
        changed[:, a, b] = (changed[:, a, b] + 1) % K
        delta = (net.logits(changed) - net.logits(codes))[:, :, i, j].abs().max()
        assert delta > 1e-6, (a, b)


def test_pixelcnn_log_prob_is_finite_and_its_loss_falls():
    K = 8
    net = PixelCNN(K, channels=16, layers=3, kernel_size=3)
    codes = torch.randint(K, (32, 1, 1)).expand(32, 4, 4).clone()  # each grid repeats one code
    log_p = net.log_prob(codes)
    assert log_p.shape == (32,) and torch.isfinite(log_p).all() and (log_p < 0).all()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = net.loss(codes).loss.item()
    for _ in range(50):
        out = net.loss(codes)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.loss.item() < 0.5 * first
    samples = net.sample(3, (4, 4))
    assert samples.shape == (3, 4, 4) and samples.dtype == torch.long
    assert samples.min() >= 0 and samples.max() < K


# ---- the model -------------------------------------------------------------------------------

def test_vqvae_shapes_of_the_interface(digits):
    model = VQVAE(**TINY).eval()
    x = digits[:10]
    codes = model.encode(x)
    assert codes.shape == (10, 4, 4) and codes.dtype == torch.long
    assert model.encode(x[0]).shape == (4, 4)
    vectors = model.code_vectors(codes)
    assert vectors.shape == (10, 8, 4, 4)
    assert torch.allclose(model.decode(codes), model.decode(vectors))
    assert model.decode(codes[0]).shape == (1, 8, 8)
    x_recon, indices, vq_loss = model(x)
    assert x_recon.shape == (10, 1, 8, 8) and torch.equal(indices, codes) and vq_loss.shape == (10,)
    assert torch.allclose(model.reconstruct(x), x_recon)
    assert model.reconstruct(x.reshape(10, 64)).shape == (10, 1, 8, 8)
    with pytest.raises(NotImplementedError, match="elbo"):
        model.log_likelihood(x)


def test_vqvae_encode_never_changes_the_codebook(digits):
    model = VQVAE(**TINY).train()
    before = model.quantizer.codebook.clone()
    model.encode(digits[:20])
    model.reconstruct(digits[:20])
    model.codebook_usage(digits[:20])
    assert torch.equal(model.quantizer.codebook, before) and not model.quantizer.initialized


@pytest.mark.parametrize("decay", [0.99, None])
def test_vqvae_loss_is_finite_and_reaches_every_trainable_parameter(digits, decay):
    model = VQVAE(**TINY, decay=decay)
    out = model.loss(digits[:32])
    assert torch.isfinite(out.loss)
    for name in ("reconstruction", "commitment", "codebook", "perplexity", "used_fraction"):
        assert out.terms[name].shape == (32,) and torch.isfinite(out.terms[name]).all(), name
    expected = out.terms["reconstruction"] + out.terms["commitment"] + out.terms["codebook"]
    assert torch.allclose(out.loss, expected.mean())
    out.loss.backward()
    names = [n for n, _ in model.named_parameters() if not n.startswith("prior_net.")]
    assert ("quantizer.codebook" in names) == (decay is None)
    for name, p in model.named_parameters():
        if name.startswith("prior_net."):
            assert p.grad is None, name  # the prior is trained separately
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_vqvae_loss_falls_on_digits(digits):
    model = VQVAE(**TINY, decay=0.9)
    optimizer = torch.optim.Adam(autoencoder_params(model), lr=3e-3)
    losses = []
    for _ in range(40):
        out = model.loss(digits)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.75 * losses[0]
    usage = model.codebook_usage(digits)
    assert usage["counts"].sum() == 256 * 16 and 1 <= usage["perplexity"] <= 16
    assert usage["used_fraction"] == pytest.approx((usage["counts"] > 0).float().mean().item())


def test_elbo_is_a_lower_bound_on_the_enumerated_log_likelihood(digits):
    # A 1x1 code grid with 4 codes: log p(x) = logsumexp_k [log p(x|k) + log p(k)] is enumerable.
    model = VQVAE(image_size=2, channels=(4,), res_blocks=0, num_codes=4, code_dim=2,
                  prior_channels=4, prior_layers=1, prior_kernel=3).eval()
    x = digits[:6, :, :2, 2:4]
    with torch.no_grad():
        joint = torch.stack([
            model.likelihood(torch.full((6, 1, 1), k)).log_prob(x) + model.prior_net.log_prob(torch.full((6, 1, 1), k))
            for k in range(4)
        ])  # (K, B)
        elbo = model.elbo(x)
    assert elbo.shape == (6,)
    assert (elbo <= torch.logsumexp(joint, 0) + 1e-5).all()
    chosen = joint.gather(0, model.encode(x).reshape(1, 6))[0]
    assert torch.allclose(elbo, chosen)


def test_vqvae_samples_come_from_the_trained_prior(digits):
    model = VQVAE(**TINY)
    with pytest.warns(UserWarning, match="prior has not been trained"):
        model.sample(2)
    history = train_prior(model, digits[:64], epochs=2, batch_size=32, progress=False)
    assert len(history) == 2 and all(math.isfinite(h) for h in history)
    assert bool(model.prior_fitted)
    samples = model.sample(6)
    assert samples.shape == (6, 1, 8, 8)
    assert samples.min() >= 0 and samples.max() <= 1
    assert not torch.allclose(samples[0], samples[1:])
    with pytest.raises(vaekit.InputError):
        train_prior(model, codes=torch.zeros(3, 2, 2, dtype=torch.long), progress=False)


def test_train_prior_changes_only_the_prior(digits):
    model = VQVAE(**TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = train_prior(model, digits, epochs=3, batch_size=64, lr=3e-3, progress=False)
    assert history[-1] < history[0]
    for name, value in model.state_dict().items():
        changed = not torch.equal(value, before[name])
        assert changed == (name.startswith("prior_net.") or name == "prior_fitted"), name


def test_save_and_load_round_trip_is_exact(digits, tmp_path):
    model = VQVAE(**TINY, decay=0.9)
    optimizer = torch.optim.Adam(autoencoder_params(model), lr=3e-3)
    for _ in range(5):
        out = model.loss(digits[:64])
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    train_prior(model, digits[:64], epochs=1, batch_size=32, progress=False)
    model.eval()

    folder = vaekit.io.save_pretrained(model, tmp_path / "vq")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "vqvae"
    loaded = vaekit.load(folder, expect=VQVAE)
    assert isinstance(loaded, VQVAE) and loaded.config == model.config

    state, restored = model.state_dict(), loaded.state_dict()
    assert state.keys() == restored.keys()
    for name in state:
        assert torch.equal(state[name], restored[name]), name
    for name in ("quantizer.codebook", "quantizer.cluster_size", "quantizer.embed_sum",
                 "quantizer.initialized", "prior_fitted"):
        assert name in restored
    assert bool(loaded.quantizer.initialized) and bool(loaded.prior_fitted)
    assert torch.equal(loaded.reconstruct(digits[:16]), model.reconstruct(digits[:16]))
    codes = model.encode(digits[:16])
    assert torch.equal(loaded.prior_net.log_prob(codes), model.prior_net.log_prob(codes))
    torch.manual_seed(1)
    a = model.sample(3)
    torch.manual_seed(1)
    assert torch.equal(loaded.sample(3), a)

    model.save_pretrained(tmp_path / "again")
    assert torch.equal(vaekit.load(tmp_path / "again").quantizer.codebook, model.quantizer.codebook)


def test_chapter_anomaly_detector_runs_on_a_vqvae(digits):
    model = VQVAE(**TINY).eval()
    is_anomaly, error = vaekit.detect_anomaly(digits[:8], model, threshold=1.0)
    assert is_anomaly.shape == (8,) and error.shape == (8,) and (error >= 0).all()
