"""EMA codebook: initialisation from data, quantisation, straight-through gradients, dead-code restarts."""

import torch

from openjukebox.vqvae.codebook import Codebook


def test_init_from_data_and_nearest_code():
    torch.manual_seed(0)
    cb = Codebook(l_bins=8, emb_width=4).train()
    x = torch.randn(2, 4, 16)
    flat = x.permute(0, 2, 1).reshape(-1, 4)
    cb.init_(flat)
    assert bool(cb.initted)
    # every initial code is one of the encoder outputs (32 vectors >= 8 codes: no tiling noise)
    assert (cb.embed[:, None] - flat[None]).abs().sum(-1).min(dim=1).values.max() == 0
    out = cb(x)
    # codes are the nearest codebook vectors
    dist = torch.cdist(flat, cb.embed)
    assert torch.equal(out.codes.view(-1), dist.argmin(dim=1))


def test_straight_through_and_commit_loss():
    torch.manual_seed(0)
    cb = Codebook(l_bins=16, emb_width=4).eval()
    cb.embed.normal_()
    x = torch.randn(1, 4, 10, requires_grad=True)
    out = cb(x)
    expected = (cb.decode(out.codes) - x).pow(2).mean()
    torch.testing.assert_close(out.commit_loss, expected)
    out.quantized.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # gradient passes straight through


def test_dead_codes_are_restarted():
    torch.manual_seed(0)
    cb = Codebook(l_bins=8, emb_width=2, mu=0.5, threshold=1.0).train()
    data_a = torch.randn(1, 2, 64) + 10.0  # first cluster
    cb(data_a)
    before = cb.embed.clone()
    # data far away from every code: all codes fall below the threshold within a few steps and are restarted
    data_b = torch.randn(1, 2, 64) - 10.0
    for _ in range(6):
        out = cb(data_b)
    assert not torch.allclose(cb.embed, before)
    assert (cb.embed.mean(dim=1) < -5).all(), "every code should now sit near the new data"
    assert out.metrics["usage"] > 0


def test_live_codes_follow_ema_mean():
    cb = Codebook(l_bins=2, emb_width=1, mu=0.9, threshold=0.0).train()
    cb.embed.copy_(torch.tensor([[0.0], [10.0]]))
    cb.embed_sum.copy_(cb.embed)
    cb.cluster_size.fill_(1.0)
    cb.initted.fill_(True)
    x = torch.tensor([[[1.0, 1.0, 9.0, 9.0]]])  # (1, 1, 4): two vectors per code
    cb(x)
    # code 0: sum 0.9*0 + 0.1*2 = 0.2, count 0.9 + 0.2 = 1.1 -> 0.1818...
    torch.testing.assert_close(cb.embed[0, 0], torch.tensor(0.2 / 1.1))
    torch.testing.assert_close(cb.embed[1, 0], torch.tensor((9.0 + 1.8) / 1.1))


def test_distributed_hooks_are_used():
    calls = {"all_reduce": 0, "broadcast": 0}

    def all_reduce(t):
        calls["all_reduce"] += 1
        return t

    def broadcast(t, src):
        calls["broadcast"] += 1
        return t

    cb = Codebook(l_bins=4, emb_width=2).train()
    cb.set_distributed(all_reduce, broadcast)
    cb(torch.randn(1, 2, 8))
    assert calls == {"all_reduce": 2, "broadcast": 2}  # init broadcast + update (sum, count, restarts)
