import torch

from sweep.attacks.norms import lp_norm, project, project_l1_box, random_start, within


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


def _l1_box_by_bisection(x: torch.Tensor, adv: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The same projection found another way: bisection on the threshold, in float64."""
    y, xf = (adv - x).flatten(1).double(), x.flatten(1).double()
    room = torch.where(y > 0, 1 - xf, xf)

    def mass(lam: torch.Tensor) -> torch.Tensor:
        return torch.minimum((y.abs() - lam[:, None]).clamp_min(0), room).sum(1)

    lo, hi = torch.zeros(len(y), dtype=torch.float64), y.abs().amax(1)
    for _ in range(100):
        mid = (lo + hi) / 2
        big = mass(mid) > eps.double()
        lo, hi = torch.where(big, mid, lo), torch.where(big, hi, mid)
    lam = torch.where(mass(torch.zeros_like(lo)) > eps.double(), hi, torch.zeros_like(hi))
    d = y.sign() * torch.minimum((y.abs() - lam[:, None]).clamp_min(0), room)
    return (xf + d).view_as(x).float()


def test_l1_box_projection_is_exact():
    """Onto the intersection of the L1 ball and the box, not project-then-clip."""
    gen = torch.Generator().manual_seed(0)
    for scale, binary in ((0.05, False), (0.5, False), (3.0, False), (1.0, True)):
        x = torch.rand(32, 1, 8, 8, generator=gen)
        x = (x > 0.5).float() if binary else x
        adv = x + scale * torch.randn(x.shape, generator=gen)
        eps = torch.rand(32, generator=gen) * 8
        p = project_l1_box(x, adv, eps)
        torch.testing.assert_close(p, _l1_box_by_bisection(x, adv, eps), atol=1e-5, rtol=0)
        assert float(p.min()) >= 0 and float(p.max()) <= 1
        assert bool(within(lp_norm(p - x, "l1"), eps).all())
    # project-then-clip spends budget on a coordinate the box then cuts: from (0.5, 0.5)
    # towards (2.0, 0.8) with eps 0.6 it stops at (1.0, 0.5), L1 0.5; the exact
    # projection (1.0, 0.6) is nearer and uses the whole budget
    x = torch.tensor([[0.5, 0.5]])
    adv = torch.tensor([[2.0, 0.8]])
    exact = project_l1_box(x, adv, torch.tensor([0.6]))
    torch.testing.assert_close(exact, torch.tensor([[1.0, 0.6]]))
    torch.testing.assert_close(project(x, adv, torch.tensor([0.6]), "l1"), torch.tensor([[1.0, 0.5]]))
