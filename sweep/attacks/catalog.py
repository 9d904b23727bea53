"""What each registered attack is, read from its module's source without importing it.

``sweep attacks`` and the sanity checks need an attack's kind, norms, defaults and
paper, not its kernel; importing a kernel imports torch (seconds on a loaded
machine, for a listing that should answer at once). So this module parses the
attack modules with :mod:`ast`: class attributes (``kind``, ``norms``,
``supports_targeted``, ``uses_gradients``, inherited from a base class in the
same module or from :class:`sweep.attacks.base.Attack`), the ``__init__``
signature with its literal defaults and what each parameter takes (its annotation,
the declaration :mod:`sweep.attacks.params` checks: ``Count`` is ``an integer >= 1``),
the rules between parameters (``checks``: :class:`~sweep.attacks.params.Exclusive`, ...,
with literal arguments), and the docstrings (the class docstring's
first paragraph says what it is, a paragraph cites the paper, its ``Args:`` section says what each parameter and a
``None`` default mean). ``tests/attacks/test_catalog.py`` checks, for every
registered attack, that this agrees with the imported class; the spec's validation
checks an entry from it torch-free (:mod:`sweep.attacks.declared`).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from sweep.attacks.registry import UnknownAttackError, location
from sweep.validation.messages import accepted

CLASS_ATTRIBUTES = ("name", "kind", "norms", "supports_targeted", "uses_gradients", "has_members", "preset")
# class attributes whose value is a tuple of rule objects (sweep.attacks.params.CHECKS)
RULE_ATTRIBUTES = ("checks",)
BASE = ("sweep.attacks.base", "Attack")
ARXIV = re.compile(r"arXiv:\d{4}\.\d{4,5}")
# what an annotation may name besides the attack modules' own aliases; modules whose
# names are imported as they are (torch-free)
ANNOTATION_NAMES: dict[str, Any] = {
    "int": int, "float": float, "bool": bool, "str": str, "None": None,
    "Annotated": Annotated, "Literal": Literal, "Field": Field, "Any": Any,
    "Sequence": Sequence, "Mapping": Mapping,
}
TORCH_FREE = ("sweep.attacks.params", "sweep.validation.names")


@dataclass(frozen=True)
class AttackInfo:
    """One registered attack, as its source declares it.

    Attributes:
        name: registry name.
        kind: ``fixed`` or ``minimal``.
        norms: supported norms; the first is the default (``norm=None``).
        supports_targeted: whether ``targets=`` is accepted.
        uses_gradients: white-box (follows input gradients) or not.
        params: hyper-parameter -> default (``inspect.Parameter.empty`` if required).
        annotations: hyper-parameter -> its annotation as a typing object (``Any`` if
            none); only for attacks whose every annotation resolves torch-free
            (:func:`readable`), else empty.
        checks: the rules between parameters (the class's ``checks``).
        has_members: made of member attacks (a cascade).
        preset: where a cascade's members come from (:func:`sweep.attacks.members.entries_of`).
        takes: hyper-parameter -> what its declaration accepts (``an integer >= 1``;
            "" where it says nothing simple).
        docs: hyper-parameter -> its ``Args:`` entry (what it and its default mean).
        summary: the class docstring's first paragraph.
        paper: the first docstring paragraph (class, then module) citing an arXiv id.
        arxiv: that id (``arXiv:1706.06083``).
    """

    name: str
    kind: str
    norms: tuple[str, ...]
    supports_targeted: bool
    uses_gradients: bool
    params: dict[str, Any] = field(default_factory=dict)
    takes: dict[str, str] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    paper: str = ""
    arxiv: str = ""
    annotations: dict[str, Any] = field(default_factory=dict)
    checks: tuple[Any, ...] = ()
    has_members: bool = False
    preset: str = ""

    def meaning(self, param: str) -> str:
        """What ``param`` and its default mean, ``None`` spelled out."""
        text = self.docs.get(param, "")
        if param == "norm":
            return f"default None: {self.norms[0]} (the first of {', '.join(self.norms)}). {text}".strip()
        return text


@cache
def _module(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise UnknownAttackError(f"attack module {module!r} is not installed")
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


def _class(module: str, name: str) -> ast.ClassDef:
    for node in _module(module).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise UnknownAttackError(f"no class {name} in {module}")


def _lineage(module: str, name: str) -> list[tuple[str, ast.ClassDef]]:
    """The class, then its bases (in the same module, or imported from another attack
    module, e.g. ``autoattack`` from ``cascade``), then :class:`Attack` (MRO order),
    each with its module."""
    chain = [(module, _class(module, name))]
    while True:
        bases = [b.id for b in chain[-1][1].bases if isinstance(b, ast.Name) and b.id != "Attack"]
        found = next((where for b in bases if (where := _base(module, b)) is not None), None)
        if found is None:
            break
        module, name = found
        chain.append((module, _class(module, name)))
    chain.append((BASE[0], _class(*BASE)))
    return chain


def _base(module: str, name: str) -> tuple[str, str] | None:
    """Where class ``name`` that ``module`` uses as a base is defined: in ``module``
    itself, or in the attack module it is imported from (``from sweep.attacks.x import``)."""
    tree = _module(module)
    if any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body):
        return module, name
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sweep.attacks."):
            for alias in node.names:
                if (alias.asname or alias.name) == name and (node.module, alias.name) != BASE:
                    return node.module, alias.name  # type: ignore[return-value]
    return None


def _attributes(chain: list[tuple[str, ast.ClassDef]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for module, cls in reversed(chain):  # the base first, so subclasses override
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
                target, value = node.target.id, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                    node.targets[0], ast.Name):
                target, value = node.targets[0].id, node.value
            else:
                continue
            if target in CLASS_ATTRIBUTES:
                found[target] = ast.literal_eval(value)
            elif target in RULE_ATTRIBUTES:
                found[target] = _rules(module, value)
    return found


def _rules(module: str, node: ast.expr) -> tuple[Any, ...]:
    """A ``checks`` tuple: calls of the rule classes of :mod:`sweep.attacks.params`
    with literal arguments (``Exclusive("rel_stepsize", "step_size")``)."""
    from sweep.attacks.params import CHECKS

    if not isinstance(node, ast.Tuple):
        raise LookupError(ast.unparse(node))
    rules = []
    for call in node.elts:
        rule = _resolve(module, call.func.id) if isinstance(call, ast.Call) and isinstance(
            call.func, ast.Name) else None
        if rule not in CHECKS:
            raise LookupError(ast.unparse(call))
        assert isinstance(call, ast.Call)
        rules.append(rule(*(ast.literal_eval(a) for a in call.args),
                          **{k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}))
    return tuple(rules)


def _init_params(chain: list[tuple[str, ast.ClassDef]]) -> tuple[dict[str, Any], dict[str, ast.expr | None], str]:
    """``(param -> default, param -> annotation node, its module)`` of the first
    ``__init__`` in ``chain``."""
    for module, cls in chain:
        for node in cls.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                args = node.args
                positional = args.posonlyargs + args.args
                defaults: list[Any] = [inspect.Parameter.empty] * (
                    len(positional) - len(args.defaults)) + list(args.defaults)
                pairs = [(a, d) for a, d in list(zip(positional, defaults, strict=True)) + list(
                    zip(args.kwonlyargs, args.kw_defaults, strict=True)) if a.arg != "self"]
                params = {
                    a.arg: inspect.Parameter.empty if d is None or d is inspect.Parameter.empty
                    else ast.literal_eval(d)
                    for a, d in pairs
                }
                return params, {a.arg: a.annotation for a, _ in pairs}, module
    return {}, {}, BASE[0]


def _takes(module: str, annotation: ast.expr | None) -> str:
    try:
        return accepted(_evaluate(module, annotation)) if annotation is not None else ""
    except LookupError:
        return ""  # a name the catalog does not follow (e.g. the cascade's member entries)


def _evaluate(module: str, node: ast.expr) -> Any:
    """The annotation ``node`` of ``module`` as a typing object, without importing the
    module: names are the module's own aliases (``ApgdLoss = Literal[...]``), followed
    through ``from sweep.attacks.x import`` to their definition, or torch-free imports."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return _resolve(module, node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _evaluate(module, node.left) | _evaluate(module, node.right)
    if isinstance(node, ast.Subscript):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        args = tuple(_evaluate(module, item) for item in items)
        return _evaluate(module, node.value)[args if len(args) > 1 else args[0]]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Field":
        return Field(**{k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg})
    raise LookupError(ast.unparse(node))


def _resolve(module: str, name: str) -> Any:
    if name in ANNOTATION_NAMES:
        return ANNOTATION_NAMES[name]
    for node in _module(module).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
            return _evaluate(module, node.value)
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if (alias.asname or alias.name) != name:
                    continue
                if node.module in TORCH_FREE:
                    return getattr(importlib.import_module(node.module), alias.name)
                if node.module.startswith("sweep.attacks."):
                    return _resolve(node.module, alias.name)
    raise LookupError(f"{name} in {module}")


def _args_section(doc: str) -> dict[str, str]:
    """``Args:`` entries of a Google-style docstring: name -> text (joined lines)."""
    docs: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "Args:")
    except StopIteration:
        return docs
    current = None
    indent = None
    for line in lines[start + 1:]:
        if not line.strip():
            if current is not None:
                break
            continue
        width = len(line) - len(line.lstrip())
        indent = width if indent is None else indent
        if width < indent:
            break
        entry = re.match(r"\s*(\w+):\s*(.*)", line)
        if width == indent and entry:
            current = entry.group(1)
            docs[current] = entry.group(2)
        elif current is not None:
            docs[current] += " " + line.strip()
    return docs


@cache
def describe(name: str) -> AttackInfo:
    """The catalog entry of registered attack ``name``; :class:`UnknownAttackError` if none."""
    module, class_name = location(name)
    chain = _lineage(module, class_name)
    attrs = _attributes(chain)
    docs: dict[str, str] = {}
    for _, cls in reversed(chain[:-1]):  # a subclass's Args: win over its base's
        docs.update(_args_section(ast.get_docstring(cls) or ""))
    params, nodes, where = _init_params(chain)
    takes = {p: _takes(where, node) for p, node in nodes.items()}
    takes["norm"] = "one of " + ", ".join(attrs["norms"])  # the class's, not every norm
    docs = {k: v for k, v in docs.items() if k in params}
    class_doc = ast.get_docstring(chain[0][1]) or ""
    module_doc = ast.get_docstring(_module(module)) or ""
    paragraphs = [" ".join(p.split()) for p in (class_doc + "\n\n" + module_doc).split("\n\n")]
    paper = next((p for p in paragraphs if ARXIV.search(p)), "")
    return AttackInfo(
        name=name,
        kind=attrs["kind"],
        norms=tuple(attrs["norms"]),
        supports_targeted=bool(attrs["supports_targeted"]),
        uses_gradients=bool(attrs["uses_gradients"]),
        params=params,
        takes=takes,
        docs=docs,
        summary=paragraphs[0],
        paper=paper,
        arxiv=m.group(0) if (m := ARXIV.search(paper)) else "",
        annotations=_annotations(where, nodes) if module.startswith(PACKAGE) else {},
        checks=tuple(attrs.get("checks", ())),
        has_members=bool(attrs.get("has_members", False)),
        preset=str(attrs.get("preset", "")),
    )


PACKAGE = "sweep.attacks."  # the modules whose classes the catalog reads whole


def _annotations(module: str, nodes: dict[str, ast.expr | None]) -> dict[str, Any]:
    """param -> annotation as a typing object; empty if one does not resolve torch-free."""
    try:
        return {p: Any if node is None else _evaluate(module, node) for p, node in nodes.items()}
    except LookupError:
        return {}


def readable(name: str) -> AttackInfo | None:
    """The catalog entry of ``name`` if it says everything the constructor checks (a
    class of this package, every annotation resolved), else ``None`` (e.g. a plugin
    outside the package: only importing it tells). :class:`UnknownAttackError` if none."""
    info = describe(name)
    return info if info.annotations or not info.params else None
