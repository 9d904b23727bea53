"""Every user mistake in a model entry is a SpecError naming the dotted field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sweep.errors import SpecError
from sweep.models.registry import BUILTIN_MODELS, load_model
from sweep.spec.config import MODEL_KEYS

SMALL = {"name": "small", "factory": "sweep.models.digits_cnn:build_digits_cnn"}


@pytest.fixture
def files(tmp_path: Path, small_net) -> dict[str, str]:
    """Checkpoint-like files in several states of brokenness."""
    good = tmp_path / "good.pt"
    torch.save(small_net.state_dict(), good)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    no_weights = tmp_path / "no_weights.pt"
    torch.save({"epoch": 3, "best_acc": 0.9}, no_weights)
    return {
        "good": str(good),
        "garbage": str(garbage),
        "truncated": str(truncated),
        "empty": str(empty),
        "no_weights": str(no_weights),
        "missing": str(tmp_path / "nope.pt"),
        "dir": str(tmp_path),
    }


def _error(entry, field="models[4]") -> SpecError:
    with pytest.raises(SpecError) as err:
        load_model(entry, field)
    return err.value


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ({"name": "resnet-18"}, "models[4].name", "did you mean 'resnet18'"),
        ({"name": "digits-cn"}, "models[4].name", "did you mean 'digits-cnn'"),
        (
            {"name": "x", "arch": "resnet19", "checkpoint": "{good}"},
            "models[4].arch",
            "did you mean",
        ),
        ({"name": ""}, "models[4].name", "required"),
        ({"arch": "resnet18"}, "models[4].name", "required"),
        ({"name": "x", "arch": "resnet18", "factory": "a:b"}, "models[4].factory", "not both"),
        ({**SMALL, "checkpoint": "{missing}"}, "models[4].checkpoint", "not found"),
        ({**SMALL, "checkpoint": "{dir}"}, "models[4].checkpoint", "not a file"),
        (
            {**SMALL, "checkpoint": "{garbage}"},
            "models[4].checkpoint",
            "not a readable PyTorch checkpoint",
        ),
        (
            {**SMALL, "checkpoint": "{truncated}"},
            "models[4].checkpoint",
            "not a readable PyTorch checkpoint",
        ),
        (
            {**SMALL, "checkpoint": "{empty}"},
            "models[4].checkpoint",
            "not a readable PyTorch checkpoint",
        ),
        ({**SMALL, "checkpoint": "{no_weights}"}, "models[4].checkpoint", "checkpoint_key"),
        (
            {**SMALL, "checkpoint": "{good}", "checkpoint_key": "ema"},
            "models[4].checkpoint_key",
            "not in the checkpoint",
        ),
        ({**SMALL, "checkpoint_key": "ema"}, "models[4].checkpoint_key", "only makes sense"),
        ({**SMALL, "checkpoint": 7}, "models[4].checkpoint", "path"),
        ({**SMALL, "mean": 0.5}, "models[4].mean", "list of numbers"),
        ({**SMALL, "mean": ["a"]}, "models[4].mean", "list of numbers"),
        ({**SMALL, "std": [0.0]}, "models[4].std", "> 0"),
        ({**SMALL, "mean": [0.1, 0.2], "std": [0.3]}, "models[4].std", "one value per channel"),
        ({**SMALL, "kwargs": "num_classes=3"}, "models[4].kwargs", "mapping"),
        (
            {"name": "x", "arch": "resnet18", "num_classes": "10", "checkpoint": "{good}"},
            "models[4].num_classes",
            "positive integer",
        ),
        (
            {"name": "x", "arch": "resnet18", "num_classes": 0, "checkpoint": "{good}"},
            "models[4].num_classes",
            "positive integer",
        ),
        (
            {"name": "x", "arch": "resnet18", "kwargs": {"no_such_arg": 1}, "checkpoint": "{good}"},
            "models[4].kwargs",
            "resnet18",
        ),
        ({"name": "x", "checkpoint": "{good}"}, "models[4].checkpoint", "no architecture"),
        (
            {"name": "x", "checkpoint": "{good}", "num_classes": 3},
            "models[4].num_classes",
            "only used with",
        ),
        (
            {"name": "digits-cnn", "checkpoint": "{good}"},
            "models[4].checkpoint",
            "brings its own weights",
        ),
        ("digits-cnn", "models[4]", "mapping"),
    ],
)
def test_model_entry_errors(files, entry, field, message):
    if isinstance(entry, dict):
        entry = {k: v.format(**files) if isinstance(v, str) else v for k, v in entry.items()}
    err = _error(entry)
    assert err.field == field, str(err)
    assert message in str(err), str(err)


def test_torchvision_name_without_checkpoint_explains_how_to_get_weights():
    err = _error({"name": "resnet18"})
    assert err.field == "models[4].checkpoint"
    text = str(err)
    assert "never downloads" in text
    assert "resnet18" in text and "https://download.pytorch.org" in text  # where torchvision's are
    assert "0.485" in text  # and the normalisation they expect


def test_wrong_architecture_names_missing_and_unexpected_keys(small_net, tmp_path):
    path = tmp_path / "small.pt"
    torch.save(small_net.state_dict(), path)
    err = _error({"name": "x", "arch": "resnet18", "num_classes": 10, "checkpoint": str(path)})
    assert err.field == "models[4].checkpoint"
    text = str(err)
    assert "missing key(s): conv1.weight" in text
    assert "unexpected key(s): 0.weight" in text


def test_num_classes_mismatch_suggests_setting_it(resnet18_10, tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(resnet18_10.state_dict(), path)
    err = _error({"name": "x", "arch": "resnet18", "checkpoint": str(path)})  # default 1000 classes
    assert err.field == "models[4].checkpoint"
    text = str(err)
    assert "fc.weight: checkpoint [10, 512] vs model [1000, 512]" in text
    assert "num_classes" in text


def test_published_keys_and_builtins():
    assert {"name", "arch", "factory", "checkpoint", "trusted", "mean", "std", "kwargs"} <= set(
        MODEL_KEYS
    )
    assert BUILTIN_MODELS == ("digits-cnn", "digits-cnn-at")
