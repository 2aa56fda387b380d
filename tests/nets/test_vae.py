"""BCQ-style VAE: latent handling, gradients, and fitting a bimodal action distribution."""

import torch

from ramac.nets.vae import VAE

torch.set_num_threads(1)

MODES = torch.tensor([[0.6, 0.6], [-0.6, -0.6]])


def test_defaults_and_clipped_latent() -> None:
    torch.manual_seed(0)
    vae = VAE(3, 2, max_action=2.0, hidden=16)
    assert vae.latent_dim == 4  # 2 * act_dim (docs/reference-code.md, "O-RAAC", "VAE")
    obs = torch.randn(20, 3)
    out = vae.decode(obs, generator=torch.Generator().manual_seed(0))
    z = torch.randn(20, 4, generator=torch.Generator().manual_seed(0)).clamp(-0.5, 0.5)
    torch.testing.assert_close(out, vae.decode(obs, z))
    torch.testing.assert_close(vae.sample(obs, generator=torch.Generator().manual_seed(0)), out)
    assert vae(obs).shape == (20, 2)
    assert vae.decode(obs, torch.full((20, 4), 1e3)).abs().max() <= 2.0  # max_action * tanh
    # Encoder log-std is clamped to [-4, 15].
    with torch.no_grad():
        vae.log_std_head.bias.fill_(-50.0)
        vae.log_std_head.weight.zero_()
    _, std = vae.encode(torch.zeros(5, 2), torch.zeros(5, 3))
    torch.testing.assert_close(std, torch.full((5, 4), float(torch.tensor(-4.0).exp())))


def test_every_parameter_gets_gradient() -> None:
    torch.manual_seed(0)
    vae = VAE(3, 2, hidden=16)
    vae.loss(torch.rand(32, 2) * 2 - 1, torch.randn(32, 3)).backward()
    for name, param in vae.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_vae_fits_bimodal_actions() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    # 50/50: BCQ's clipped latent (|z| <= 0.5) covers the prior's centre only, so with unequal
    # weights the minority mode can fall outside it (with 70/30 it gets ~no samples).
    second = torch.rand(2000, generator=gen) >= 0.5
    data = MODES[second.long()] + 0.05 * torch.randn(2000, 2, generator=gen)
    vae = VAE(1, 2, hidden=64)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for _ in range(600):
        idx = torch.randint(0, len(data), (256,), generator=gen)
        loss = vae.loss(data[idx], torch.zeros(256, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    with torch.no_grad():
        mean, _ = vae.encode(MODES, torch.zeros(2, 1))
        recon = vae.decode(torch.zeros(2, 1), mean)
        samples = vae.sample(torch.zeros(1000, 1), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(recon, MODES, atol=0.1, rtol=0)  # each mode maps back to itself
    near = (torch.cdist(samples, MODES) < 0.2).float().mean(0)
    assert near.sum() > 0.75, near  # most samples sit on a mode, not between them
    assert near.min() > 0.3, near  # and both modes are produced
