"""``"module:function"`` factories: the only code a spec may name.

A spec may point at user code for a model or a dataset with a string like
``"my_project.nets:build_wrn"``. That string is parsed with a regular
expression, the module is imported with :func:`importlib.import_module` and the
attribute looked up with :func:`getattr`; nothing is ever passed to ``eval`` or
``exec``. So a spec can only run code that is already importable on the
worker's ``sys.path`` (a file the user wrote or a package they installed), and
only the callable it names.

Every problem becomes a :class:`~sweep.errors.SpecError` naming the field:
a malformed string, a module that is not importable (or that fails while
importing), a missing or non-callable attribute, keyword arguments the
callable does not accept, and exceptions raised by the call itself.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from sweep.errors import SpecError, did_you_mean

# dotted.module.path:attribute(.attribute)* -- Python identifiers only, so a
# spec value can never smuggle in an expression, a call or a file path.
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
FACTORY_PATTERN = re.compile(rf"^({_IDENT}(?:\.{_IDENT})*):({_IDENT}(?:\.{_IDENT})*)$")


def resolve_factory(spec: Any, field: str) -> Callable[..., Any]:
    """The callable that ``spec`` (``"module:function"``) names.

    ``field`` is the dotted spec field holding ``spec`` (e.g. ``models[2].factory``).
    """
    if not isinstance(spec, str) or not FACTORY_PATTERN.match(spec):
        raise SpecError(
            field,
            spec,
            'expected "module:function" (a dotted module path, a colon, and a callable '
            'in it, e.g. "my_project.nets:build_model")',
        )
    module_name, _, attr_path = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            raise SpecError(
                field,
                spec,
                f"module {module_name!r} is not importable (no module named {exc.name!r}); "
                "is its folder on PYTHONPATH, or its package installed on every worker?",
            ) from exc
        # The module exists but one of *its* imports is missing.
        raise SpecError(
            field, spec, f"importing {module_name!r} failed: {exc} (a dependency of it is missing)"
        ) from exc
    except Exception as exc:  # the user's module raised while importing
        raise SpecError(
            field, spec, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc

    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            owner = getattr(target, "__name__", type(target).__name__)
            raise SpecError(field, spec, f"{owner!r} has no attribute {part!r}{hint}")
        target = getattr(target, part)
    if not callable(target):
        raise SpecError(field, spec, f"{attr_path!r} is a {type(target).__name__}, not a callable")
    return target


def check_kwargs(value: Any, field: str) -> dict[str, Any]:
    """``kwargs`` from a spec entry: a mapping with string keys (``None`` -> ``{}``)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(field, value, "expected a mapping of keyword arguments")
    bad = [k for k in value if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise SpecError(field, bad[0], "keyword argument names must be Python identifiers")
    return dict(value)


def call_factory(spec: Any, kwargs: Mapping[str, Any], field: str, kwargs_field: str) -> Any:
    """Resolve ``spec`` and call it with ``kwargs``; errors name ``field`` / ``kwargs_field``.

    The keyword arguments are checked against the callable's signature first, so
    a typo in the spec reads as such ("did you mean ...") rather than as a
    ``TypeError`` from deep inside user code.
    """
    fn = resolve_factory(spec, field)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: just call
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            params = [
                p.name
                for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            unknown = [k for k in kwargs if k not in params]
            hint = f"; {did_you_mean(unknown[0], params)}" if unknown and params else ""
            raise SpecError(
                kwargs_field, dict(kwargs), f"{spec} does not accept these: {exc}{hint}"
            ) from exc
    try:
        return fn(**kwargs)
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(field, spec, f"calling it raised {type(exc).__name__}: {exc}") from exc
