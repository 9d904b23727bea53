"""torchvision architectures filled from local checkpoints in the layouts found in the wild."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sweep.errors import SpecError
from sweep.models.registry import load_model
from sweep.models.torchvision_models import adapt_torchvision_keys


def _save(obj: object, path: Path) -> str:
    torch.save(obj, path)
    return str(path)


def _assert_same_logits(model: nn.Module, reference: nn.Module, images: torch.Tensor) -> None:
    with torch.no_grad():
        expected = reference(images)
        got = model(images)
    assert got.shape == (images.shape[0], 10)
    assert torch.equal(got, expected)


def _assert_frozen(model: nn.Module) -> None:
    assert not model.training
    assert all(not m.training for m in model.modules())
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_arch_and_state_dict_give_identical_logits(resnet18_10, cifar_batch, tmp_path):
    path = _save(resnet18_10.state_dict(), tmp_path / "r18.pt")
    model = load_model(
        {"name": "my-r18", "arch": "resnet18", "num_classes": 10, "checkpoint": path}, "models[0]"
    )
    _assert_frozen(model)
    _assert_same_logits(model, resnet18_10, cifar_batch)


def test_name_that_is_an_architecture_needs_no_arch(resnet18_10, cifar_batch, tmp_path):
    path = _save(resnet18_10.state_dict(), tmp_path / "r18.pt")
    model = load_model({"name": "resnet18", "num_classes": 10, "checkpoint": path}, "models[0]")
    _assert_same_logits(model, resnet18_10, cifar_batch)


def test_mean_and_std_are_applied_inside_the_model(small_net, digits_images, tmp_path):
    path = _save(small_net.state_dict(), tmp_path / "small.pt")
    model = load_model({**SMALL, "checkpoint": path, "mean": [0.3], "std": [0.2]}, "models[0]")
    with torch.no_grad():
        torch.testing.assert_close(model(digits_images), small_net((digits_images - 0.3) / 0.2))
        # and it matters: without normalisation the logits differ
        assert not torch.allclose(model(digits_images), small_net(digits_images))


def _ddp(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"module.{k}": v for k, v in state.items()}


def test_ddp_training_checkpoint_of_a_torchvision_model(resnet18_10, cifar_batch, tmp_path):
    optimizer = torch.optim.SGD(resnet18_10.parameters(), lr=0.1, momentum=0.9)
    ckpt = {
        "epoch": 90,
        "state_dict": _ddp(resnet18_10.state_dict()),
        "optimizer": optimizer.state_dict(),
    }
    path = _save(ckpt, tmp_path / "ddp.pt")
    model = load_model(
        {"name": "r", "arch": "resnet18", "num_classes": 10, "checkpoint": path}, "models[0]"
    )
    _assert_same_logits(model, resnet18_10, cifar_batch)


# The layouts below are independent of the architecture: a small net keeps them fast.
SMALL = {"name": "small", "factory": "sweep.models.digits_cnn:build_digits_cnn"}


@pytest.mark.parametrize(
    "layout",
    [
        "ddp",  # DistributedDataParallel / DataParallel: "module." on every key
        "training-dict-ddp",  # {"epoch", "state_dict": <ddp keys>, "optimizer"}
        "model-key",  # torchvision reference scripts / DeiT: {"model": ..., "args": ...}
        "net-key",  # kuangliu/pytorch-cifar: {"net": ..., "acc": ..., "epoch": ...}
        "compiled",  # torch.compile: "_orig_mod."
        "lightning",  # LightningModule with self.model: "model." under "state_dict"
    ],
)
def test_common_checkpoint_layouts(layout, small_net, digits_images, tmp_path):
    state = small_net.state_dict()
    optimizer = torch.optim.SGD(small_net.parameters(), lr=0.1, momentum=0.9)
    obj = {
        "ddp": _ddp(state),
        "training-dict-ddp": {
            "epoch": 90,
            "state_dict": _ddp(state),
            "optimizer": optimizer.state_dict(),
        },
        "model-key": {"model": state, "epoch": 3, "args": {"lr": 0.1}},
        "net-key": {"net": _ddp(state), "acc": 95.1, "epoch": 199},
        "compiled": {f"_orig_mod.{k}": v for k, v in state.items()},
        "lightning": {"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": 10},
    }[layout]
    path = _save(obj, tmp_path / "ckpt.pt")
    model = load_model({**SMALL, "checkpoint": path}, "models[0]")
    _assert_same_logits(model, small_net, digits_images)


def test_bare_weights_load_into_a_wrapped_factory_model(
    small_net, digits_images, tmp_path, write_module
):
    # The factory returns the net already wrapped (keys "net.0.weight", ...) while the
    # checkpoint holds the bare net's keys ("0.weight", ...).
    module = write_module(
        """
        from sweep.models.digits_cnn import build_digits_cnn
        from sweep.models.wrapper import NormalizedModel

        def wrapped():
            return NormalizedModel(build_digits_cnn())
        """
    )
    path = _save(small_net.state_dict(), tmp_path / "bare.pt")
    model = load_model(
        {"name": "w", "factory": f"{module}:wrapped", "checkpoint": path}, "models[0]"
    )
    _assert_same_logits(model, small_net, digits_images)


def test_checkpoint_key_picks_the_ema_weights(small_net, digits_images, tmp_path):
    state = small_net.state_dict()
    other = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in state.items()}
    path = _save({"state_dict": other, "state_dict_ema": state}, tmp_path / "timm.pt")
    model = load_model(
        {**SMALL, "checkpoint": path, "checkpoint_key": "state_dict_ema"}, "models[0]"
    )
    _assert_same_logits(model, small_net, digits_images)
    # without checkpoint_key the trained (non-EMA) entry is preferred
    plain = load_model({**SMALL, "checkpoint": path}, "models[0]")
    with torch.no_grad():
        assert not torch.equal(plain(digits_images), small_net(digits_images))


def test_full_pickled_model_is_refused_unless_trusted(resnet18_10, cifar_batch, tmp_path):
    path = _save(resnet18_10, tmp_path / "whole.pt")
    entry = {"name": "whole", "checkpoint": path}
    with pytest.raises(SpecError) as err:
        load_model(entry, "models[3]")
    assert err.value.field == "models[3].checkpoint"
    assert "trusted: true" in str(err.value)
    assert "torchvision.models.resnet.ResNet" in str(err.value)  # says what it tried to load

    model = load_model({**entry, "trusted": True}, "models[3]")
    _assert_frozen(model)
    _assert_same_logits(model, resnet18_10, cifar_batch)
    # with an architecture, a trusted whole model supplies its weights
    with_arch = load_model(
        {**entry, "trusted": True, "arch": "resnet18", "num_classes": 10}, "models[3]"
    )
    _assert_same_logits(with_arch, resnet18_10, cifar_batch)
    # and with an architecture but untrusted, it is still refused
    with pytest.raises(SpecError, match="trusted"):
        load_model({**entry, "arch": "resnet18", "num_classes": 10}, "models[3]")


class _Payload:
    """A pickle that runs code when loaded: the reason for weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_malicious_pickle_never_runs_without_trusted(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = _save(
        {"state_dict": {"w": torch.zeros(1)}, "extra": _Payload(marker)}, tmp_path / "evil.pt"
    )
    with pytest.raises(SpecError) as err:
        load_model({"name": "evil", "arch": "resnet18", "checkpoint": path}, "models[0]")
    assert err.value.field == "models[0].checkpoint"
    assert not marker.exists()
    # the same file, trusted, does run it: trusted really means "runs code"
    with pytest.raises(SpecError):
        load_model(
            {"name": "evil", "arch": "resnet18", "checkpoint": path, "trusted": True}, "models[0]"
        )
    assert marker.read_text() == "code ran"


def test_old_torchvision_densenet_keys_are_renamed():
    old = {
        "features.denseblock1.denselayer1.norm.1.weight": torch.ones(1),
        "features.denseblock1.denselayer1.conv.2.weight": torch.ones(1),
        "classifier.weight": torch.ones(1),
    }
    new = adapt_torchvision_keys("densenet121", old)
    assert set(new) == {
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock1.denselayer1.conv2.weight",
        "classifier.weight",
    }
    assert adapt_torchvision_keys("resnet18", old) == old


# torch.jit is deprecated (FutureWarning) but still what many exported models are.
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_torchscript_archive_needs_trusted(small_net, digits_images, tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(small_net), path)
    with pytest.raises(SpecError, match="TorchScript archive") as err:
        load_model({"name": "ts", "checkpoint": str(path)}, "models[0]")
    assert err.value.field == "models[0].checkpoint"
    model = load_model({"name": "ts", "checkpoint": str(path), "trusted": True}, "models[0]")
    _assert_same_logits(model, small_net, digits_images)


@pytest.mark.parametrize("header", [b"", b"\x80\x02"], ids=["random", "pickle-header"])
def test_random_bytes_are_unreadable_not_code(tmp_path, header):
    """Issue 15, case 13: random bytes are refused as unreadable, not as a pickle of
    Python objects that "would run code"."""
    import random

    path = tmp_path / "noise.pt"
    path.write_bytes(header + random.Random(15).randbytes(4096))
    with pytest.raises(SpecError) as err:
        load_model({**SMALL, "checkpoint": str(path)}, "models[0]")
    message = str(err.value)
    assert err.value.field == "models[0].checkpoint"
    assert "not a readable PyTorch checkpoint" in message, message
    assert "run code" not in message and "Python object" not in message, message
    assert len(message.splitlines()) == 1
