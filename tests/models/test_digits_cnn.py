"""The built-in digits models: training says what it does, on one thread, and the
first use of a model is never silent."""

from __future__ import annotations

import dataclasses

import torch

from sweep.models import digits_cnn
from sweep.models.digits_cnn import RECIPES, single_thread, throttled_stderr, train_digits_cnn


def test_training_reports_every_epoch_with_its_accuracy() -> None:
    lines: list[tuple[int, int, str]] = []
    recipe = dataclasses.replace(RECIPES["digits-cnn-at"], epochs=2, adv_steps=1)
    train_digits_cnn(recipe, lambda *a: lines.append(a), "digits-cnn-at")
    assert [(e, n) for e, n, _ in lines] == [(1, 2), (2, 2)]
    assert lines[0][2].startswith("digits-cnn-at: epoch 1/2 loss ")
    assert "train acc" in lines[1][2] and "(PGD adversarials)" in lines[1][2]
    first = float(lines[0][2].split("train acc ")[1].split("%")[0])
    assert 0.0 < first <= 100.0


def test_training_runs_on_one_thread_and_restores_the_setting() -> None:
    before = torch.get_num_threads()
    seen = []
    with single_thread():
        seen.append(torch.get_num_threads())
    assert seen == [1] and torch.get_num_threads() == before


def test_progress_is_throttled_but_the_first_and_last_epoch_always_print(capsys) -> None:
    emit = throttled_stderr(every_s=3600)
    for epoch in range(1, 6):
        emit(epoch, 5, f"m: epoch {epoch}/5")
    assert capsys.readouterr().err.splitlines() == ["m: epoch 1/5", "m: epoch 5/5"]


def test_first_use_says_it_trains_and_where_it_caches(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(digits_cnn.RECIPES, "digits-cnn",
                        dataclasses.replace(RECIPES["digits-cnn"], epochs=1))
    digits_cnn.load_digits_model("digits-cnn")
    err = capsys.readouterr().err
    assert "digits-cnn: first use, training it on CPU (cached at" in err and str(tmp_path) in err
    assert "epoch 1/1" in err
    digits_cnn.load_digits_model("digits-cnn")  # cached now: quiet
    assert capsys.readouterr().err == ""
