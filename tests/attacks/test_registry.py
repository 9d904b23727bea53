import sys

import pytest

from sweep.attacks import UnknownAttackError, attack_params, available, create


def test_unknown_attack_suggests_the_closest():
    with pytest.raises(UnknownAttackError, match=r"did you mean 'pgd'"):
        create("pgdd")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(UnknownAttackError, match=r"no parameter 'stpes'.*did you mean 'steps'"):
        create("pgd", stpes=3)


def test_unsupported_norm_is_rejected():
    with pytest.raises(ValueError, match="norm"):
        create("fgsm", norm="l0")


@pytest.mark.parametrize("name", available())
def test_every_attack_builds_with_defaults_and_documents_itself(name):
    atk = create(name)
    assert atk.name == name
    doc = (sys.modules[type(atk).__module__].__doc__ or "") + (type(atk).__doc__ or "")
    assert "arXiv" in doc or "doi" in doc.lower() or "http" in doc, "cite the paper"
    assert "norm" in attack_params(name)
