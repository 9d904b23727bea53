"""Reading a spec file into plain Python values, safely, whatever the file holds.

A spec is hand-written YAML of a few kilobytes; a hostile or broken one must
still end in one :class:`~sweep.errors.SpecError` within a second or two and
bounded memory, never a traceback, a hang or a blown-up process. What
:func:`read_spec_file` enforces, in this order:

- size: at most :data:`MAX_SPEC_BYTES` (read no further than that: a 50 MB file of
  comments is refused without parsing it);
- text: UTF-8 (the byte offset of the first bad byte is named);
- YAML: parsed with PyYAML's safe loader (libyaml when present), with YAML 1.2
  floats: ``1e-3`` is the number 0.001, where YAML 1.1 (PyYAML's default) reads a
  float only with a dot and would hand over the string ``"1e-3"``;
- shape, checked on the composed node graph before any Python value is built:
  no key twice in one mapping (YAML lets the last win silently; in a spec that is
  almost always a mistake), no alias inside its own anchor, and at most
  :data:`MAX_VALUES` values once aliases are expanded, which stops "billion
  laughs" alias bombs (nine levels of nine aliases make 387 million strings out
  of a 500-byte file) before anything expands them;
- libyaml's own nesting limit (1000 levels), and any other failure of the parser
  or of PyYAML's constructors (a 5000-digit integer, an unhashable key, an empty
  ``!!float``, which raises ``IndexError``), become the same one-line error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from sweep.errors import SpecError, one_line

MAX_SPEC_BYTES = 1 << 20
"""A spec larger than 1 MiB is refused (hand-written specs are a few kB)."""

MAX_VALUES = 200_000
"""Values (scalars, lists, mappings) a spec may hold once its aliases are expanded."""

_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~50x faster

# YAML 1.2 core-schema floats (exponent without a dot: 1e-3), plus YAML 1.1's forms.
_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class SpecLoader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader with YAML 1.2 floats (integers still resolve first)."""


# add_implicit_resolver would append to lists shared with yaml.SafeLoader: copy them first
SpecLoader.yaml_implicit_resolvers = {
    ch: list(resolvers) for ch, resolvers in _Base.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def read_spec_file(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """``(parsed value, text)`` of the spec file at ``path``; see the module docstring."""
    p = Path(path)
    shown = str(path)
    if not p.exists():
        raise SpecError("spec", shown, "no such file")
    if p.is_dir():
        raise SpecError("spec", shown, "is a directory, not a YAML file")
    try:
        with p.open("rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError("spec", shown, f"cannot be read: {exc.strerror or exc}") from exc
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            "spec", shown,
            f"is larger than {MAX_SPEC_BYTES >> 20} MiB; a spec is a few kB of YAML (is it the right file?)",
        )  # fmt: skip
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            "spec", shown,
            f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} (offset {exc.start}); "
            "save it as UTF-8",
        ) from exc  # fmt: skip
    return parse_yaml(text, shown), text


def parse_yaml(text: str, shown: str = "spec") -> Any:
    """The YAML document ``text`` as plain Python values; raises :class:`SpecError`."""
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    except SpecError:
        raise
    except yaml.YAMLError as exc:
        raise SpecError("spec", shown, f"is not valid YAML: {one_line(str(exc), 300)}") from exc
    except RecursionError as exc:
        raise SpecError("spec", shown, "nests too deeply to be a spec") from exc
    except Exception as exc:  # PyYAML's constructors: int() of 5000 digits, `!!float` of ""
        raise SpecError(
            "spec", shown,
            f"holds a value YAML cannot read: {type(exc).__name__}: {one_line(str(exc), 200)}",
        ) from exc
    finally:
        loader.dispose()


def _check_graph(root: yaml.Node) -> None:
    """Duplicate keys, recursive aliases and the expanded size, in one walk of the nodes.

    Nodes reached again through an alias are the same objects: their expanded size is
    memoised, so the walk is linear in the text however much the aliases expand.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node, where: str) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise SpecError(
                where or "spec", getattr(node, "anchor", None) or "alias",
                "an alias refers to the anchor it is inside (a cycle)",
            )  # fmt: skip
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                total += size(child, f"{where}[{i}]")
        elif isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for k, v in node.value:
                name = k.value if isinstance(k, yaml.ScalarNode) else "?"
                child = f"{where}.{name}" if where else str(name)
                if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG:
                    if (k.tag, k.value) in seen:
                        raise SpecError(
                            child, k.value,
                            f"the key appears twice in one mapping (lines {seen[k.tag, k.value]} and "
                            f"{k.start_mark.line + 1}); YAML would silently keep only the last",
                        )  # fmt: skip
                    seen[k.tag, k.value] = k.start_mark.line + 1
                total += size(k, child) + size(v, child)
        active.discard(key)
        sizes[key] = total
        if total > MAX_VALUES:
            raise SpecError(
                where or "spec", f"{total} values",
                f"expands to more than {MAX_VALUES} values (YAML aliases?); a spec is far smaller",
            )  # fmt: skip
        return total

    size(root, "")
