"""``sweep plan`` reads an array dataset without torch's data path, to the same plan a run makes,
and a bad dataset entry is still exit code 2 naming the field (plan and validate alike)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweep.cli.main import cli
from sweep.execution.pipeline import prepare
from tests.data.conftest import write_mnist
from tests.execution.specs import assert_spec_error, base_spec, write_spec

ROOT = Path(__file__).resolve().parents[2]


def mnist_linear() -> object:
    """A model for 28x28 images (the built-ins take digits' 8x8); a spec names it as a factory."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))


def _plan_id(output: str) -> str:
    found = re.search(r"\(id ([0-9a-f]{16})\)", output)
    assert found, output
    return found.group(1)


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_plan_names_the_sweep_a_run_prepares(tmp_path, dataset):
    """plan (arrays, no probing) and a run's prepare (tensors for the probe) agree on
    the layout, the cells and the sweep id."""
    spec = base_spec(tmp_path / "out")
    if dataset == "mnist":
        write_mnist(tmp_path / "data", n_test=9)
        spec["dataset"] = {"name": "mnist", "root": str(tmp_path / "data"), "samples": 9, "shard_size": 4}
        spec["models"] = [{"name": "linear", "factory": "tests.cli.test_plan_data:mnist_linear"}]
    path = write_spec(tmp_path / "spec.yaml", spec)
    result = CliRunner().invoke(cli, ["plan", str(path), "--show", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    planned = prepare(path, probe_models=False)
    run = prepare(path, probe_models=True)
    assert planned.layout == run.layout
    assert [c.cell_id for c in planned.cells] == [c.cell_id for c in run.cells]
    assert _plan_id(result.output) == planned.sweep_id == run.sweep_id
    for cell in run.cells[:3]:
        assert cell.cell_id in result.output


def test_plan_loads_no_torch_data_or_model_code(tmp_path):
    """The plan command's data path stays on NumPy: no tensor dataset, no model checks,
    no torchvision, no pandas. (torch itself is still imported, by the attack classes
    the spec parser checks hyper-parameters with, and by the pipeline's worker import.)"""
    path = write_spec(tmp_path / "spec.yaml", base_spec(tmp_path / "out"))
    code = f"""
import sys
from click.testing import CliRunner
from sweep.cli.main import cli
result = CliRunner().invoke(cli, ["plan", {str(path)!r}, "--show", "0"], catch_exceptions=False)
assert result.exit_code == 0, result.output
loaded = ("torchvision", "pandas", "pyarrow.dataset", "sklearn", "sweep.models.checks",
          "sweep.data.factory_sets", "sweep.data.image_folder", "sweep.models.registry")
print(sorted(m for m in loaded if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


BAD_DATASETS = {
    "split": ({"name": "digits", "split": "bogus"}, ["dataset.split", "'bogus'", "train, test, all"]),
    "key-of-another-source": ({"name": "digits", "root": "x"}, ["dataset.root", "not used by digits"]),
    "missing-root": ({"name": "cifar10", "root": "no/such/folder"},
                     ["dataset.root", "no such directory", "never downloaded"]),
    "missing-file": ({"name": "mnist", "root": "."}, ["dataset.root", "no mnist file t10k-images-idx3-ubyte"]),
    "shuffle-seed": ({"name": "digits", "shuffle_seed": -1}, ["dataset.shuffle_seed", "(got -1)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DATASETS))
@pytest.mark.parametrize("command", [["plan"], ["validate", "--no-code"]])
def test_bad_dataset_exits_2_naming_the_field(tmp_path, case, command):
    entry, needles = BAD_DATASETS[case]
    spec = base_spec(tmp_path / "out", dataset={**entry, "samples": 16, "shard_size": 8})
    path = write_spec(tmp_path / "spec.yaml", spec)
    result = CliRunner().invoke(cli, [*command, str(path)], catch_exceptions=False)
    assert_spec_error(result, needles, tmp_path / "out")
