"""What a sweep job ships: the spec, the local files it names, and the job's runtime env.

:func:`stage` copies the spec file, plus each local file it names that exists
here: ``models[i].checkpoint``, ``dataset.root``, and the module of each
``module:function`` factory when that module is a file or package in the current
folder (relative paths in a spec are relative to the current folder, as for
``sweep run``), into a folder that becomes the job's ``working_dir``, with the
launcher (:mod:`sweep.cluster.launcher`) beside them. Absolute local paths are
copied under ``files/`` and the shipped spec points at the copies; a path that
does not exist here is left as written (it must exist on the cluster). Data and
checkpoints larger than Ray's package limit belong on storage the cluster mounts.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweep.cluster import launcher
from sweep.errors import SpecError
from sweep.spec.reader import read_spec_file

SHIPPED_FILES_DIR = "files"
"""Folder inside the job's working_dir that receives copies of absolute local paths."""

# Environment variables a user may not set through --env: Ray and the driver set
# them (the driver's own runtime_env sets PYTHONPATH, and Ray refuses to merge a
# job runtime_env that sets the same variable), or they would leak credentials.
RESERVED_ENV_VARS = frozenset({"PYTHONPATH", "RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"})

IGNORED_WHEN_COPYING = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".ipynb_checkpoints")


def package_limit_bytes() -> int:
    """Largest working_dir Ray's job server accepts (its GCS message size limit)."""
    try:
        from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

        return int(GCS_STORAGE_MAX_SIZE)
    except (ImportError, AttributeError):  # pragma: no cover - older/newer Ray layout
        return 512 * 1024 * 1024





@dataclass
class Staged:
    """A job's working_dir, ready to ship. ``spec_file`` is relative to ``working_dir``."""

    working_dir: Path
    spec_file: str
    name: str
    output: str
    shipped: list[str] = field(default_factory=list)  # what was copied, as "local -> shipped"
    on_cluster: list[str] = field(default_factory=list)  # paths left for the cluster to have
    size_bytes: int = 0


def stage(
    spec_path: str | os.PathLike[str],
    dest: Path,
    *,
    include: Sequence[str | os.PathLike[str]] = (),
    cwd: Path | None = None,
) -> Staged:
    """Copy the spec and the local files it names into ``dest`` (see module doc).

    Raises :class:`SpecError` for a missing or unreadable spec, a relative
    ``output`` or SQLite tracking path (the job runs in a temporary folder on the
    head, so results written there would be lost), and a package over Ray's limit.
    """
    cwd = (cwd or Path.cwd()).resolve()
    path = Path(spec_path).expanduser()
    if not path.is_absolute():
        path = cwd / path
    raw, text = read_spec_file(path)  # bounded: size, UTF-8, duplicate keys, alias bombs
    if not isinstance(raw, Mapping):
        raise SpecError("spec", str(spec_path), "the top level must be a mapping of keys")
    raw = dict(raw)
    output = check_cluster_output(raw)
    check_cluster_tracking(raw)

    dest.mkdir(parents=True, exist_ok=True)
    staged = Staged(working_dir=dest, spec_file=path.name, name=str(raw.get("name", path.stem)),
                    output=output)  # fmt: skip
    rewritten = False
    for where, value, setter in _path_fields(raw):
        new = _ship_path(value, where, cwd, dest, staged)
        if new != value:
            setter(new)
            rewritten = True
    for where, factory in _factory_fields(raw):
        _ship_factory_module(factory, where, cwd, dest, staged)
    for extra in include:
        _ship_path(str(extra), "--include", cwd, dest, staged, required=True)

    launcher.write(dest)
    spec_out = dest / staged.spec_file
    if rewritten:
        header = f"# {path.name} as submitted by `sweep submit`; local paths point at shipped copies\n"
        spec_out.write_text(header + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    else:
        spec_out.write_text(text, encoding="utf-8")  # byte for byte what the user wrote
    staged.size_bytes = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    limit = package_limit_bytes()
    if staged.size_bytes > limit:
        raise SpecError(
            "spec", str(spec_path),
            f"the files it ships weigh {staged.size_bytes / 2**20:.0f} MiB, over Ray's "
            f"{limit / 2**20:.0f} MiB job package limit; put large checkpoints and data on "
            "storage every node mounts and name them by absolute path",
        )  # fmt: skip
    return staged


def check_cluster_output(raw: Mapping[str, Any]) -> str:
    """``output`` must be absolute or an object-store URI: relative paths would resolve
    inside the job's temp folder."""
    output = raw.get("output")
    if output is None:
        raise SpecError(
            "output", None,
            "is required for a cluster run: an absolute path on storage every node mounts, "
            "e.g. /mnt/shared/sweeps/my-sweep, or an object store, e.g. s3://bucket/sweeps/my-sweep "
            "(workers write their result files there)",
        )  # fmt: skip
    if not isinstance(output, str) or not output.strip():
        raise SpecError("output", output, "expected a directory path")
    if "://" in output and not output.lower().startswith("file://"):
        return output  # an object store: the job's own parse checks its shape and access
    if not output.startswith(("/", "file:///")):
        raise SpecError(
            "output", output,
            "is not an absolute path; on a cluster the job runs in a temporary folder on the "
            "head, so give an absolute path on storage every node mounts, e.g. "
            "/mnt/shared/sweeps/my-sweep, or an object store URI (s3://bucket/prefix)",
        )  # fmt: skip
    return output


def check_cluster_tracking(raw: Mapping[str, Any]) -> None:
    """A ``sqlite:///relative.db`` tracking store would also land in the job's temp folder."""
    mlflow = raw.get("mlflow")
    uri = mlflow.get("tracking_uri") if isinstance(mlflow, Mapping) else None
    if isinstance(uri, str) and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        raise SpecError(
            "mlflow.tracking_uri", uri,
            "is a relative SQLite path, which on a cluster lands in the job's temporary "
            "folder; use an http(s):// MLflow server, or sqlite:////absolute/shared/path.db",
        )  # fmt: skip


def _path_fields(raw: dict[str, Any]) -> Iterator[tuple[str, Any, Callable[[Any], None]]]:
    """(dotted field, value, setter) for every spec value that names a local file or folder."""
    models = raw.get("models")
    if isinstance(models, list):
        for i, model in enumerate(models):
            if isinstance(model, dict) and isinstance(model.get("checkpoint"), str):
                yield f"models[{i}].checkpoint", model["checkpoint"], _setter(model, "checkpoint")
    dataset = raw.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("root"), str):
        yield "dataset.root", dataset["root"], _setter(dataset, "root")


def _setter(entry: dict[str, Any], key: str) -> Callable[[Any], None]:
    def set_value(value: Any) -> None:
        entry[key] = value

    return set_value


def _factory_fields(raw: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    models = raw.get("models")
    if isinstance(models, list):
        for i, model in enumerate(models):
            if isinstance(model, Mapping) and isinstance(model.get("factory"), str):
                yield f"models[{i}].factory", model["factory"]
    dataset = raw.get("dataset")
    if isinstance(dataset, Mapping) and isinstance(dataset.get("factory"), str):
        yield "dataset.factory", dataset["factory"]


def _ship_path(
    value: str, where: str, cwd: Path, dest: Path, staged: Staged, *, required: bool = False
) -> str:
    """Copy one named path into ``dest``; return the value the shipped spec should hold."""
    given = Path(value).expanduser()
    local = given if given.is_absolute() else cwd / given
    if not local.exists():
        if required:
            raise SpecError(where, value, "no such file or folder")
        staged.on_cluster.append(f"{where}: {value}")
        return value
    local = local.resolve()
    inside = _relative_inside(local, cwd)
    if not given.is_absolute() and inside is not None:
        target_rel = inside  # keep the relative path the spec already uses
    else:
        target_rel = _unique(dest, Path(SHIPPED_FILES_DIR) / local.name)
    target = dest / target_rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.is_dir():
            shutil.copytree(local, target, ignore=IGNORED_WHEN_COPYING)
        else:
            shutil.copy2(local, target)
        staged.shipped.append(f"{where}: {value} -> {target_rel.as_posix()}")
    return target_rel.as_posix() if target_rel != given else value


def _relative_inside(path: Path, root: Path) -> Path | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def _unique(dest: Path, rel: Path) -> Path:
    candidate, n = rel, 1
    while (dest / candidate).exists():
        candidate = rel.with_name(f"{rel.stem}-{n}{rel.suffix}")
        n += 1
    return candidate


def _ship_factory_module(factory: str, where: str, cwd: Path, dest: Path, staged: Staged) -> None:
    """Ship the top-level module or package of ``module:function`` if it lives in ``cwd``.

    Only the current folder is searched (as ``sweep run`` imports factories from
    there); an installed package must be installed on the cluster too.
    """
    module = factory.partition(":")[0]
    top = module.split(".")[0]
    if not top.isidentifier():
        return  # malformed; the job's own validation names the field
    found = importlib.machinery.PathFinder.find_spec(top, [str(cwd)])
    if found is None or found.origin in (None, "namespace"):
        if found is not None and found.submodule_search_locations:
            location = Path(next(iter(found.submodule_search_locations)))  # namespace package
        else:
            staged.on_cluster.append(f"{where}: module {top!r} (not in {cwd}; must be installed)")
            return
    elif found.submodule_search_locations:
        location = Path(found.origin).parent  # a package: ship the whole folder
    else:
        location = Path(found.origin)
    target = dest / location.name
    if target.exists():
        return
    if location.is_dir():
        shutil.copytree(location, target, ignore=IGNORED_WHEN_COPYING)
    else:
        shutil.copy2(location, target)
    staged.shipped.append(f"{where}: {location.name}")


def check_spec(staged: Staged) -> None:
    """Validate the shipped spec here, as the job will (:func:`sweep.spec.config.parse_spec`).

    Runs in the staged folder, so relative paths resolve to the shipped copies;
    a folder ``output`` is swapped for a scratch folder because the cluster's path
    need not exist on this machine (an object-store URI is kept: parsing checks its
    shape, not its bucket). A typo thus fails in seconds, before anything is sent.
    """
    from sweep.spec.config import parse_spec

    raw = yaml.safe_load((staged.working_dir / staged.spec_file).read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(staged.working_dir):
        output = str(raw.get("output", ""))
        if "://" not in output or output.lower().startswith("file://"):
            raw["output"] = scratch
        try:
            parse_spec(raw)
        except SpecError as exc:
            if any(item.startswith(f"{exc.field}:") for item in staged.on_cluster):
                raise SpecError(
                    exc.field, exc.value,
                    f"{exc.message}; it is not on this machine: if it exists on the cluster, "
                    "submit with --no-check",
                ) from exc  # fmt: skip
            raise


# -- the job's runtime environment -----------------------------------------------------------




def parse_env_vars(items: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``KEY=VALUE`` as given, or ``KEY`` alone: the value from this shell's environment."""
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SpecError("--env", item, "expected KEY=VALUE or KEY (a variable name)")
        if key in RESERVED_ENV_VARS:
            raise SpecError("--env", item, f"{key} is set by Ray / the sweep driver; it cannot be overridden")
        if not sep:
            if key not in environ:
                raise SpecError("--env", item, f"{key} is not set in this shell; give KEY=VALUE")
            value = environ[key]
        out[key] = value
    return out


def runtime_env(staged: Staged, env_vars: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The job's runtime_env: the staged folder as working_dir, unbuffered output, user vars.

    ``PYTHONPATH`` is not set here: the driver's ``ray.init`` sets it (factories
    import from the working_dir) and Ray refuses a job env that sets it too.
    """
    env = {"PYTHONUNBUFFERED": "1"}  # log lines reach `sweep logs` as they are printed
    env.update(env_vars or {})
    return {"working_dir": str(staged.working_dir), "env_vars": env}


@contextlib.contextmanager
def staging_dir() -> Iterator[Path]:
    """A temporary folder for :func:`stage`; Ray zips and uploads it during submit."""
    path = Path(tempfile.mkdtemp(prefix="sweep-submit-"))
    try:
        yield path / "job"
    finally:
        shutil.rmtree(path, ignore_errors=True)

