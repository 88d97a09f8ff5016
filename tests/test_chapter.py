"""The chapter's snippets, run as written with `from vaekit import ...`, asserting what the text claims."""

import pytest
import torch
import torch.nn.functional as F

from vaekit import CVAE, VAE, ConvVAE, detect_anomaly, vae_loss


@pytest.fixture(scope="module")
def chapter_model(mnist_small):
    """The chapter's training loop (section 28.3), 3 epochs on 6000 MNIST images."""
    torch.manual_seed(0)
    images = mnist_small.x  # (N, 1, 28, 28)
    dataloader = torch.utils.data.DataLoader(images, batch_size=128, shuffle=True)
    model = VAE(input_dim=784, latent_dim=20)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for epoch in range(3):
        for batch in dataloader:
            x = batch.view(batch.size(0), -1)
            x_recon, mu, logvar = model(x)
            loss = vae_loss(x_recon, x, mu, logvar)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item() / len(x))
    model.losses = losses
    return model.eval()


def test_training_loop_learns(chapter_model):
    first, last = chapter_model.losses[:5], chapter_model.losses[-5:]
    assert sum(last) / 5 < 0.5 * sum(first) / 5  # from ~540 to well under 270 nats per image
    assert sum(last) / 5 < 200  # 3 epochs on 6000 images: about 190 nats


def test_forward_returns_probabilities_and_gaussian_parameters():
    model = VAE(input_dim=784, latent_dim=20)
    x_recon, mu, logvar = model(torch.rand(4, 784))
    assert x_recon.shape == (4, 784) and mu.shape == (4, 20) and logvar.shape == (4, 20)
    assert x_recon.min() >= 0 and x_recon.max() <= 1


def test_reparameterize_matches_mean_and_std():
    model = VAE(784, 20)
    mu, logvar = torch.full((20000, 2), 1.5), torch.full((20000, 2), 2 * torch.log(torch.tensor(0.5)))
    z = model.reparameterize(mu, logvar)
    assert torch.allclose(z.mean(0), torch.tensor([1.5, 1.5]), atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 0.5]), atol=0.02)


def test_conv_vae_shapes_from_chapter():
    model = ConvVAE(latent_dim=20)
    x = torch.rand(2, 1, 28, 28)
    x_recon, mu, logvar = model(x)
    assert x_recon.shape == (2, 1, 28, 28) and mu.shape == (2, 20)
    assert model.decode(torch.randn(3, 20)).shape == (3, 1, 28, 28)


def test_beta_weights_the_kl(chapter_model):
    x = torch.rand(8, 784)
    torch.manual_seed(1)
    x_recon, mu, logvar = chapter_model(x)
    l1 = vae_loss(x_recon, x, mu, logvar, beta=1.0)
    l4 = vae_loss(x_recon, x, mu, logvar, beta=4.0)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    assert torch.allclose(l4 - l1, 3 * kl)


def test_generation(chapter_model):
    num_samples, latent_dim = 16, 20
    with torch.no_grad():
        z = torch.randn(num_samples, latent_dim)
        generated = chapter_model.decode(z)
    assert generated.shape == (16, 784)
    assert generated[0].view(28, 28).shape == (28, 28)
    # generated digits are mostly dark background with some bright strokes, like MNIST
    assert 0.05 < generated.mean() < 0.3


def test_interpolation(chapter_model, mnist_small):
    img1, img2 = mnist_small.x[0].view(1, -1), mnist_small.x[1].view(1, -1)
    with torch.no_grad():
        mu1, _ = chapter_model.encode(img1)
        mu2, _ = chapter_model.encode(img2)
        alphas = torch.linspace(0, 1, steps=10)
        interpolated = [chapter_model.decode(alpha * mu1 + (1 - alpha) * mu2) for alpha in alphas]
    steps = torch.cat(interpolated)
    assert steps.shape == (10, 784)
    # smooth transition: consecutive frames differ less than the endpoints do
    gaps = (steps[1:] - steps[:-1]).abs().sum(1)
    assert gaps.max() < (steps[0] - steps[-1]).abs().sum()


def test_latent_arithmetic(chapter_model, mnist_small):
    king, man, woman = (mnist_small.x[i].view(1, -1) for i in range(3))
    with torch.no_grad():
        z_king = chapter_model.encode(king)[0]
        z_man = chapter_model.encode(man)[0]
        z_woman = chapter_model.encode(woman)[0]
        z_result = z_king - z_man + z_woman
        queen_like = chapter_model.decode(z_result)
        assert torch.allclose(queen_like, chapter_model.decode(z_king + z_woman - z_man), atol=1e-6)
    assert queen_like.shape == (1, 784)


def test_anomaly_detection(chapter_model, mnist_small):
    torch.manual_seed(0)
    normal = mnist_small.x[:200].view(200, -1)
    noise = torch.rand(200, 784)
    with torch.no_grad():
        _, err_normal = detect_anomaly(normal, chapter_model, threshold=0)
        threshold = err_normal.quantile(0.95)
        flags, err_noise = detect_anomaly(noise, chapter_model, threshold)
        normal_flags, _ = detect_anomaly(normal, chapter_model, threshold)
    assert flags.float().mean() > 0.95  # noise is flagged
    assert normal_flags.float().mean() < 0.2  # digits mostly are not


def test_data_augmentation(chapter_model, mnist_small):
    dataset = list(zip(mnist_small.x[:20].view(20, 1, -1), mnist_small.y[:20]))
    augmented_dataset = []
    with torch.no_grad():
        for img, label in dataset:
            mu, logvar = chapter_model.encode(img)
            for _ in range(5):
                z = chapter_model.reparameterize(mu, logvar)
                augmented = chapter_model.decode(z)
                augmented_dataset.append((augmented, label))
    assert len(augmented_dataset) == 100
    first = torch.cat([a for a, _ in augmented_dataset[:5]])
    assert (first[0] - first[1]).abs().sum() > 0  # variations, not copies
    # each variation stays closer to its own source than to another example's
    src0, src1 = dataset[0][0], dataset[1][0]
    assert ((first - src0).pow(2).sum(1) < (first - src1).pow(2).sum(1)).all()


def test_denoising(chapter_model, mnist_small):
    torch.manual_seed(0)
    img = mnist_small.x[:100].view(100, -1)

    def add_noise(x):
        return (x + 0.5 * torch.randn_like(x)).clamp(0, 1)

    noisy_img = add_noise(img)
    with torch.no_grad():
        mu, _ = chapter_model.encode(noisy_img)
        denoised = chapter_model.decode(mu)
    assert F.mse_loss(denoised, img) < 0.75 * F.mse_loss(noisy_img, img)


def test_cvae_generates_requested_class(mnist_small):
    torch.manual_seed(0)
    num_classes, latent_dim = 10, 20
    model = CVAE(input_dim=784, latent_dim=latent_dim, num_classes=num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x_all, y_all = mnist_small.x.view(-1, 784), F.one_hot(mnist_small.y, 10).float()
    for epoch in range(5):
        for i in range(0, len(x_all), 128):
            x, y = x_all[i:i + 128], y_all[i:i + 128]
            x_recon, mu, logvar = model(x, y)
            loss = vae_loss(x_recon, x, mu, logvar)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    y = torch.zeros(1, num_classes)
    y[0, 3] = 1  # Class 3 (one-hot)
    z = torch.randn(1, latent_dim)
    generated = model.decode(z, y)
    assert generated.shape == (1, 784)
    assert torch.equal(generated, model.decode(z, torch.tensor([3])))  # integer labels work too
    # the label steers the class: decoding the prior mean with label c looks most like the mean c
    with torch.no_grad():
        typical = model.decode(torch.zeros(10, latent_dim), torch.arange(10))
    means = torch.stack([x_all[mnist_small.y == c].mean(0) for c in range(10)])
    nearest = torch.cdist(typical, means).argmin(1)
    assert (nearest == torch.arange(10)).sum() >= 8
