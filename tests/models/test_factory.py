"""User models through ``factory: "module:function"``, and every way a factory can be wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.errors import SpecError
from sweep.factory import FACTORY_PATTERN, resolve_factory
from sweep.models.registry import load_model

USER_NETS = """
import torch
from torch import nn

NOT_CALLABLE = 42

def build(num_classes=10, width=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_classes))

def in_train_mode():
    net = build()
    net.train()
    return net

def not_a_module():
    return "a string"

def explodes():
    raise RuntimeError("out of coffee")

class Zoo:
    @staticmethod
    def tiny():
        return build(num_classes=3)
"""


@pytest.fixture
def user_nets(write_module) -> str:
    return write_module(USER_NETS)


def test_factory_with_kwargs_builds_a_frozen_model(user_nets, digits_images):
    model = load_model(
        {"name": "mine", "factory": f"{user_nets}:build", "kwargs": {"num_classes": 5, "width": 3}},
        "models[0]",
    )
    assert model(digits_images).shape == (6, 5)
    assert not model.training and all(not p.requires_grad for p in model.parameters())


def test_factory_model_in_train_mode_comes_back_in_eval_mode(user_nets):
    model = load_model({"name": "t", "factory": f"{user_nets}:in_train_mode"}, "models[0]")
    assert all(not m.training for m in model.modules())


def test_dotted_attribute_path(user_nets, digits_images):
    model = load_model({"name": "z", "factory": f"{user_nets}:Zoo.tiny"}, "models[0]")
    assert model(digits_images).shape == (6, 3)


def test_factory_plus_checkpoint_restores_the_weights(
    user_nets, digits_images, tmp_path, write_module
):
    module = __import__(user_nets)
    trained = module.build(num_classes=4)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # differ from what build() alone gives
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), path)
    model = load_model(
        {
            "name": "m",
            "factory": f"{user_nets}:build",
            "kwargs": {"num_classes": 4},
            "checkpoint": str(path),
        },
        "models[0]",
    )
    with torch.no_grad():
        assert torch.equal(model(digits_images), trained.eval()(digits_images))
        assert not torch.equal(model(digits_images), module.build(num_classes=4)(digits_images))


@pytest.mark.parametrize(
    "value",
    [
        "user_mod.build",  # no colon
        "user_mod:build()",  # a call
        "os:system; rm -rf /",  # an expression
        "__import__('os'):system",
        "a b:c",
        ":build",
        "user_mod:",
        "",
        42,
        None,
    ],
)
def test_malformed_factory_strings_are_rejected_before_any_import(value):
    with pytest.raises(SpecError) as err:
        resolve_factory(value, "models[2].factory")
    assert err.value.field == "models[2].factory"
    assert "module:function" in str(err.value)


def test_pattern_accepts_dotted_modules_and_attributes():
    assert FACTORY_PATTERN.match("pkg.sub_mod:Builder.create")
    assert not FACTORY_PATTERN.match("pkg.sub_mod:Builder.create.")


@pytest.mark.parametrize(
    ("factory", "kwargs", "field", "message"),
    [
        ("no_such_module_xyz:build", None, "models[1].factory", "not importable"),
        ("{mod}:buld", None, "models[1].factory", "did you mean 'build'"),
        ("{mod}:NOT_CALLABLE", None, "models[1].factory", "not a callable"),
        ("{mod}:build", {"widht": 3}, "models[1].kwargs", "did you mean 'width'"),
        ("{mod}:not_a_module", None, "models[1].factory", "expected a torch.nn.Module"),
        ("{mod}:explodes", None, "models[1].factory", "out of coffee"),
        ("{mod}:build", ["not", "a", "mapping"], "models[1].kwargs", "mapping"),
    ],
)
def test_factory_errors_name_the_field(user_nets, factory, kwargs, field, message):
    entry = {"name": "m", "factory": factory.format(mod=user_nets)}
    if kwargs is not None:
        entry["kwargs"] = kwargs
    with pytest.raises(SpecError) as err:
        load_model(entry, "models[1]")
    assert err.value.field == field
    assert message in str(err.value)


def test_module_whose_import_fails(write_module):
    broken = write_module("import definitely_missing_dependency_xyz\n")
    raising = write_module("raise ValueError('bad config at import')\n")
    with pytest.raises(SpecError, match="definitely_missing_dependency_xyz") as err:
        load_model({"name": "m", "factory": f"{broken}:build"}, "models[0]")
    assert err.value.field == "models[0].factory"
    with pytest.raises(SpecError, match="bad config at import"):
        load_model({"name": "m", "factory": f"{raising}:build"}, "models[0]")


def test_factory_checkpoint_mismatch_names_keys(user_nets, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(SpecError) as err:
        load_model(
            {"name": "m", "factory": f"{user_nets}:build", "checkpoint": str(path)}, "models[0]"
        )
    assert err.value.field == "models[0].checkpoint"
    text = str(err.value)
    assert "missing key(s): 1.weight" in text
    assert "unexpected key(s)" in text and "weight" in text


def test_num_classes_belongs_in_kwargs_for_factories(user_nets):
    with pytest.raises(SpecError) as err:
        load_model({"name": "m", "factory": f"{user_nets}:build", "num_classes": 3}, "models[0]")
    assert err.value.field == "models[0].num_classes"
