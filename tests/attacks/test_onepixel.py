"""One-Pixel attack: it fools digits with 1 and 3 pixels, never changes more than
eps pixels, scores the whole population of the whole batch in one forward pass
per generation, and stops querying fooled images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.attacks import create
from sweep.attacks.onepixel import distinct_partners, paint

POPULATION, ITERATIONS = 50, 10  # the paper's 400 x 100 costs minutes on a busy CPU


class RowCounter(nn.Module):
    """Wraps a model and records how many rows each forward call receives."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return self.model(x)


def changed_pixels(adv: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``[B]``: spatial positions where any channel differs (counted independently of norms.py)."""
    return (adv != images).any(dim=1).flatten(1).sum(dim=1)


def test_paint_sets_only_masked_slots_and_resolves_duplicates():
    images = torch.zeros(2, 3, 4, 4)
    genes = torch.tensor(
        [
            [[1.2, 2.9, 0.1, 0.2, 0.3], [1.7, 2.0, 0.4, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0, 1.0]],
            [[3.0, 3.5, 0.7, 0.8, 0.9], [0.0, 1.0, 0.5, 0.5, 0.5], [2.0, 2.0, 1.0, 1.0, 1.0]],
        ]
    )
    mask = torch.tensor([[True, True, False], [True, False, True]])
    out = paint(images, genes, mask)
    # row 0: slots 0 and 1 both floor to pixel (1, 2); the later slot wins; slot 2 is masked
    torch.testing.assert_close(out[0, :, 1, 2], torch.tensor([0.4, 0.5, 0.6]))
    assert int(changed_pixels(out, images)[0]) == 1
    # row 1: slots 0 and 2 paint (3, 3) and (2, 2); slot 1 is masked off
    torch.testing.assert_close(out[1, :, 3, 3], torch.tensor([0.7, 0.8, 0.9]))
    torch.testing.assert_close(out[1, :, 2, 2], torch.ones(3))
    assert int(changed_pixels(out, images)[1]) == 2


def test_distinct_partners():
    gen = torch.Generator().manual_seed(0)
    picks = distinct_partners(rows=8, population=6, count=3, gen=gen, device=torch.device("cpu"))
    assert picks.shape == (8, 6, 3)
    assert int(picks.min()) >= 0 and int(picks.max()) < 6
    own = torch.arange(6).view(1, 6, 1).expand(8, 6, 1)
    everyone = torch.cat([own, picks], dim=-1).sort(dim=-1).values
    assert bool((everyone[..., 1:] != everyone[..., :-1]).all()), "partners must be distinct"


@pytest.mark.parametrize(("pixels", "at_least"), [(1, 1), (3, 5)])
def test_fools_digits_within_the_pixel_budget(pixels, at_least, digits_model, digits_batch):
    images, labels = digits_batch[0][:16], digits_batch[1][:16]
    atk = create("onepixel", population=POPULATION, iterations=ITERATIONS)
    out = atk(digits_model, images, labels, float(pixels), seed=0)
    with torch.no_grad():
        pred = digits_model(out.adv).argmax(1)
    assert torch.equal(out.success, pred != labels)
    fooled = out.success & (out.clean_pred == labels)
    print(f"onepixel eps={pixels}: fooled {int(fooled.sum())}/{int((out.clean_pred == labels).sum())}")
    assert int(fooled.sum()) >= at_least
    changed = changed_pixels(out.adv, images)
    assert int(changed.max()) <= pixels
    assert bool((changed[fooled] >= 1).all())


def test_per_sample_pixel_budgets(digits_model, digits_batch):
    images, labels = digits_batch[0][:8], digits_batch[1][:8]
    eps = torch.tensor([1.0, 3.0, 0.5, 2.7, 5.0, 1.9, 0.0, 4.2])
    out = create("onepixel", population=20, iterations=3)(digits_model, images, labels, eps, seed=0)
    assert bool((changed_pixels(out.adv, images) <= eps.floor()).all())
    assert torch.equal(out.adv[[2, 6]], images[[2, 6]])  # under one pixel: untouched


@pytest.mark.parametrize("batch", [4, 16])
def test_one_forward_pass_per_generation(batch, digits_model, digits_batch):
    """Forward calls do not grow with the batch: each scores population x active images."""
    images, labels = digits_batch[0][:batch], digits_batch[1][:batch]
    counter = RowCounter(digits_model)
    atk = create("onepixel", population=POPULATION, iterations=ITERATIONS)
    out = atk(counter, images, labels, 1.0, seed=0)
    # first and last calls are the base class's clean prediction and verification
    assert counter.rows[0] == counter.rows[-1] == batch
    attack_rows = counter.rows[1:-1]
    assert len(attack_rows) <= ITERATIONS + 1  # the initial population, then one per generation
    correct = int((out.clean_pred == labels).sum())
    assert attack_rows[0] == correct * POPULATION
    assert all(rows % POPULATION == 0 for rows in attack_rows)
    # fooled images leave the batch: the rows never grow, and survivors are queried to the end
    assert attack_rows == sorted(attack_rows, reverse=True)
    survivors = int(((out.clean_pred == labels) & ~out.success).sum())
    if survivors:
        assert len(attack_rows) == ITERATIONS + 1
        assert attack_rows[-1] >= survivors * POPULATION


def test_batch_rows_chunks_the_forward_pass(digits_model, digits_batch):
    images, labels = digits_batch[0][:8], digits_batch[1][:8]
    counter = RowCounter(digits_model)
    atk = create("onepixel", population=20, iterations=2, batch_rows=64)
    out = atk(counter, images, labels, 1.0, seed=0)
    assert max(counter.rows[1:-1]) <= 64
    assert int(changed_pixels(out.adv, images).max()) <= 1
