"""The house plan holds: sub-packages import only downstream of the data flow, no cycles.

The layers, lowest first (docs/DESIGN.md, "House plan"): a module may import its own
layer and the ones below, never one above. Lazy imports inside functions count too:
an upward import hidden in a function is still an upward dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sweep"

# lowest first; each entry is a set of top-level names under sweep
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "factory", "validation"}),  # what every layer raises or checks with
    frozenset({"results"}),                      # schema, store, manifest, plan
    frozenset({"attacks", "models", "data"}),    # kernels, networks, data sets
    frozenset({"spec"}),                         # spec -> validated spec -> grid
    frozenset({"analysis"}),                     # rows -> curves, flags, plots
    frozenset({"tracking"}),                     # MLflow runs
    frozenset({"execution"}),                    # pipeline, pool, worker
    frozenset({"report"}),                       # the HTML report
    frozenset({"cluster"}),                      # Ray Jobs, cluster status
    frozenset({"cli"}),                          # the command line
    frozenset({"api", "__init__"}),              # the Python face
)


def layer_of(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"sweep.{top} is in no layer: add it to LAYERS in {__file__}")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield ".".join(("sweep", *rel.parts)), path


def imported(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """``(sweep.x.y, line)`` for every import of a sweep module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sweep":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base.split(".")[0] != "sweep":
                continue
            if base == "sweep":  # from sweep import x: x is the sub-module
                for alias in node.names:
                    yield f"sweep.{alias.name}", node.lineno
            else:
                yield base, node.lineno


def top_name(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_is_in_a_layer() -> None:
    for module, _ in modules():
        layer_of(top_name(module))


def test_no_upward_imports() -> None:
    upward = []
    for module, path in modules():
        own = layer_of(top_name(module))
        for target, line in imported(path, module):
            if target == "sweep.__version__" or top_name(target) == "__version__":
                continue
            if layer_of(top_name(target)) > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        source = top_name(module)
        for target, _ in imported(path, module):
            if top_name(target) not in (source, "__version__"):
                graph.setdefault(source, set()).add(top_name(target))
    seen: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in seen:
                visit(nxt, [*trail, node])
        seen[node] = 2

    for start in sorted(graph):
        if start not in seen:
            visit(start, [])


def test_flat_package_holds_only_the_foundation() -> None:
    """A newcomer finds the room for a change from the folder names: no loose modules."""
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "api", "errors", "factory"}
    assert not loose, f"modules outside a sub-package: {sorted(loose)}"
