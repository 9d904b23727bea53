import torch

from sweep.attacks.norms import lp_norm, project, random_start, within


def test_projection_lands_inside_each_ball():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8, generator=gen)
    adv = torch.rand(16, 3, 8, 8, generator=gen)
    eps = torch.linspace(0.01, 2.0, 16)
    for norm in ("linf", "l2", "l1", "l0"):
        e = eps.round() if norm == "l0" else eps
        p = project(x, adv, e, norm)
        assert float(p.min()) >= 0 and float(p.max()) <= 1
        assert bool(within(lp_norm(p - x, norm), e).all()), norm


def test_l1_projection_is_the_euclidean_projection():
    # the projection of (3, 1) onto the unit L1 ball is (1, 0); of (0.5, 0.25) itself
    delta = torch.tensor([[3.0, 1.0], [0.5, 0.25]])
    x = torch.zeros(2, 2)
    p = project(x, delta, torch.tensor([1.0, 1.0]), "l1")
    torch.testing.assert_close(p, torch.tensor([[1.0, 0.0], [0.5, 0.25]]))


def test_l0_counts_pixels_across_channels():
    delta = torch.zeros(1, 3, 4, 4)
    delta[0, :, 1, 1] = 0.5  # one pixel, all channels
    delta[0, 0, 2, 3] = -0.1  # another pixel, one channel
    assert lp_norm(delta, "l0").item() == 2


def test_infinite_eps_only_clips():
    x = torch.full((2, 1, 2, 2), 0.5)
    adv = torch.tensor([2.0, -1.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    p = project(x, adv, torch.tensor([float("inf")] * 2), "l2")
    assert torch.equal(p[0], torch.ones(1, 2, 2)) and torch.equal(p[1], torch.zeros(1, 2, 2))


def test_random_start_is_seeded_and_inside():
    x = torch.rand(8, 1, 8, 8)
    eps = torch.full((8,), 0.3)
    for norm in ("linf", "l2", "l1"):
        a = random_start(x, eps, norm, torch.Generator().manual_seed(3))
        b = random_start(x, eps, norm, torch.Generator().manual_seed(3))
        assert torch.equal(a, b)
        assert bool(within(lp_norm(a - x, norm), eps).all())
