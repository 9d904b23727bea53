"""Ray Job Submission for sweeps: ship a spec to a cluster, start its driver there, follow it.

Both ends of a sweep job live here:

- the **client** (``sweep submit / status / logs`` on a laptop): stage the spec
  and the local files it names into a folder, send that folder as the job's
  ``working_dir`` through Ray's Job Submission REST API (the dashboard, port
  8265), then poll the job's status and logs;
- the **job side** (:func:`job_main`, run on the head as ``python -m
  sweep.submission SPEC``): ``sweep run SPEC --address auto``, so a submitted
  sweep runs exactly the code path a local one does, on the cluster's Ray.

Why ``python -m sweep.submission`` rather than a script shipped with the job:
attack-sweep is installed on every node (``cluster.yaml`` setup commands, the
KubeRay image), so the entrypoint exists there however the client was installed
(a wheel has no ``jobs/`` folder). Which ``python``: the shipped launcher
(:mod:`sweep.launcher`) runs it with the interpreter Ray itself runs on at the
head, not the first ``python`` on the head's ``PATH``, and says in one line what
to fix when that Python lacks attack-sweep or torch. ``jobs/run_sweep.py`` wraps
the same function for users who call ``ray job submit`` themselves.

What is shipped (:func:`stage`): the spec file, plus each local file it names
that exists here: ``models[i].checkpoint``, ``dataset.root``, and the module of
each ``module:function`` factory when that module is a file or package in the
current folder (relative paths in a spec are relative to the current folder, as
for ``sweep run``). Absolute local paths are copied under ``files/`` and the
shipped spec points at the copies; a path that does not exist here is left as
written (it must exist on the cluster). Data and checkpoints larger than Ray's
package limit belong on storage the cluster mounts.

Token authentication (Ray >= 2.59 turns it on for clusters started with a
token): Ray's own client sends its token only when ``RAY_AUTH_MODE=token`` is set
in the *client's* environment, so a laptop without that variable gets "401
Unauthorized". :func:`auth_headers` always sends the token if one can be found,
from the same places and in the same order as Ray (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``), via Ray's own token loader.
Sending it to a cluster with authentication off is harmless.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.machinery
import os
import re
import secrets
import shlex
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweep import launcher
from sweep.errors import SpecError
from sweep.spec_file import read_spec_file

DEFAULT_DASHBOARD_PORT = 8265
POLL_SECONDS = 1.0
"""How often ``--wait`` / ``--follow`` ask the job server for status and new log lines."""

SHIPPED_FILES_DIR = "files"
"""Folder inside the job's working_dir that receives copies of absolute local paths."""

METADATA_KEY = "attack_sweep"
"""Job metadata key marking a job as a sweep (``sweep status`` lists only these)."""

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


# -- addresses and authentication -------------------------------------------------------------


def normalize_address(address: str | None) -> str:
    """``http(s)://host:port`` of a Ray dashboard; a bare ``host[:port]`` gets ``http://`` and 8265.

    Raises :class:`SpecError` (field ``--address``) for anything else, e.g. a GCS
    address like ``ray://...`` or ``auto``, which only work on the cluster itself.
    """
    if address is None or not str(address).strip():
        raise SpecError(
            "--address", address,
            "give the Ray dashboard's URL, e.g. http://127.0.0.1:8265 (after `ray dashboard "
            "cluster.yaml`), or set RAY_API_SERVER_ADDRESS",
        )  # fmt: skip
    text = str(address).strip().rstrip("/")
    if "://" not in text:
        text = f"http://{text}"
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https"):
        raise SpecError(
            "--address", address,
            f"expected an http(s):// URL of the Ray dashboard (got scheme {parsed.scheme!r}); "
            "Ray Jobs are submitted to the dashboard, port 8265 by default",
        )  # fmt: skip
    try:
        port = parsed.port
    except ValueError as exc:
        raise SpecError("--address", address, f"bad port: {exc}") from exc
    if not parsed.hostname or parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise SpecError("--address", address, "expected http(s)://HOST:PORT and nothing after it")
    host = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
    return f"{parsed.scheme}://{host}:{port or DEFAULT_DASHBOARD_PORT}"


def find_auth_token() -> str | None:
    """The Ray authentication token this machine has, or None (see module doc)."""
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:  # a Ray without token authentication
        return None
    loader = AuthenticationTokenLoader.instance()
    # The loader caches its first answer per process; the environment may have
    # changed since (a test, a notebook), so read afresh -- and leave no cached
    # answer behind: a later ray.init() in this process (an embedded sweep) must
    # read the token its own cluster uses, not the one we looked up.
    loader.reset_cache()
    try:
        if not loader.has_token(ignore_auth_mode=True):
            return None
        return loader.get_raw_token(ignore_auth_mode=True) or None
    finally:
        loader.reset_cache()


def auth_headers() -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` when a token is found, else ``{}``."""
    token = find_auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextlib.contextmanager
def _address_wins(address: str) -> Iterator[None]:
    """Ray's client lets ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS`` override the address
    it is given; the address on our command line must win instead."""
    saved = {k: os.environ.get(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")}
    os.environ["RAY_API_SERVER_ADDRESS"] = address
    os.environ.pop("RAY_ADDRESS", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect(address: str | None, warn: Callable[[str], None] | None = None) -> Any:
    """A ``JobSubmissionClient`` for the dashboard at ``address``, authenticated if possible.

    Unreachable addresses and authentication failures are :class:`SpecError`
    (exit code 2): the user fixes them by changing the command or the token.
    ``warn`` receives a warning when the token would cross a network in clear text.
    """
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = normalize_address(address)
    headers = auth_headers()
    if headers and warn is not None and not _private_channel(url):
        warn(
            f"warning: sending the Ray token in clear text to {url}; reach the dashboard "
            "through an SSH tunnel (`ray dashboard cluster.yaml`) or https"
        )
    try:
        with _address_wins(url):
            return JobSubmissionClient(url, headers=headers)
    except AuthenticationError as exc:
        raise SpecError("--address", url, _auth_hint(sent_token=bool(headers))) from exc
    except (ConnectionError, OSError) as exc:
        raise SpecError(
            "--address", url,
            "no Ray job server answers there; is the head running and its dashboard port "
            "reachable from here (`ray dashboard cluster.yaml` forwards it to "
            f"http://127.0.0.1:8265)? ({_first_line(exc)})",
        ) from exc  # fmt: skip
    except RuntimeError as exc:  # e.g. "Jobs API is not supported on the Ray cluster"
        raise SpecError("--address", url, _first_line(exc)) from exc


def _private_channel(url: str) -> bool:
    """https, or plain http to this machine's loopback (where SSH tunnels end)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https":
        return True
    host = parsed.hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _auth_hint(*, sent_token: bool) -> str:
    # decided by what was sent, not by parsing Ray's message: its wording depends on
    # state a process keeps from an earlier ray.init (e.g. a cached auth mode)
    if not sent_token:
        what = "the cluster requires a token and none was found here"
    else:
        what = "the cluster rejected this machine's token"
    return (
        f"{what}; copy the head's token (`ray get-auth-token` on the head) to "
        "~/.ray/auth_token, or set RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- staging: the spec and the files it needs ------------------------------------------------


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
    """Validate the shipped spec here, as the job will (:func:`sweep.config.parse_spec`).

    Runs in the staged folder, so relative paths resolve to the shipped copies;
    a folder ``output`` is swapped for a scratch folder because the cluster's path
    need not exist on this machine (an object-store URI is kept: parsing checks its
    shape, not its bucket). A typo thus fails in seconds, before anything is sent.
    """
    from sweep.config import parse_spec

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


# -- the job: runtime environment, entrypoint, submission -------------------------------------


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


def entrypoint(spec_file: str, *, fresh: bool = False) -> str:
    """The shell command Ray runs on the head: the launcher :func:`stage` ships
    (:mod:`sweep.launcher`) finds the Python that has attack-sweep there and runs
    :func:`job_main` with it."""
    args = ["sh", launcher.FILE_NAME, spec_file]
    if fresh:
        args.append("--fresh")
    return shlex.join(args)


def new_submission_id(name: str) -> str:
    """``sweep-<name>-<UTC time>-<random>``: readable, sortable, never reused (Ray refuses reuse)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "sweep"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"sweep-{slug}-{stamp}-{secrets.token_hex(4)}"


def submit(
    client: Any,
    staged: Staged,
    *,
    fresh: bool = False,
    env_vars: Mapping[str, str] | None = None,
    submission_id: str | None = None,
) -> str:
    """Submit the staged sweep; returns its submission id."""
    from sweep import __version__

    job_id = submission_id or new_submission_id(staged.name)
    try:
        return str(
            client.submit_job(
                entrypoint=entrypoint(staged.spec_file, fresh=fresh),
                submission_id=job_id,
                runtime_env=runtime_env(staged, env_vars),
                metadata={
                    METADATA_KEY: str(__version__),
                    "sweep_name": staged.name,
                    "spec": staged.spec_file,
                    "output": staged.output,
                },
            )
        )
    except RuntimeError as exc:  # Ray's SDK: "Request failed with status code 500: ..."
        raise JobRefused(client.get_address(), exc) from exc
    except OSError as exc:  # requests' errors: the head went away between connect and submit
        raise JobRefused(client.get_address(), exc) from exc


class JobRefused(RuntimeError):
    """The job server answered the submission with an error (e.g. HTTP 500 "No available
    agent to submit job" while the head's agent is still starting): one line, exit 1."""

    def __init__(self, address: str, cause: BaseException) -> None:
        why = " ".join(str(cause).split()).rstrip(".")[:300] or type(cause).__name__
        super().__init__(
            f"the Ray job server at {address} did not take the job: {why}; nothing was "
            "submitted. If the head has just started, try again in a few seconds"
        )


@contextlib.contextmanager
def staging_dir() -> Iterator[Path]:
    """A temporary folder for :func:`stage`; Ray zips and uploads it during submit."""
    path = Path(tempfile.mkdtemp(prefix="sweep-submit-"))
    try:
        yield path / "job"
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- following a job ---------------------------------------------------------------------------


class JobNotFound(SpecError):
    """No job with that submission id on this cluster."""

    def __init__(self, job_id: str) -> None:
        super().__init__("JOB", job_id, "no such job on this cluster; `sweep status` lists them")


class LostContact(RuntimeError):
    """The job server stopped answering while a job was followed; the job may still run."""

    def __init__(self, address: str, job_id: str, cause: BaseException) -> None:
        super().__init__(
            f"lost contact with the Ray job server at {address} ({_first_line(cause)}); job "
            f"{job_id} may still be running: once the head is reachable, `sweep logs {job_id} "
            "--follow` picks it up again"
        )


def job_info(client: Any, job_id: str) -> Any:
    """``JobDetails`` of ``job_id``; :class:`JobNotFound` if the cluster has no such job."""
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            raise JobNotFound(job_id) from exc
        raise


def follow(
    client: Any,
    job_id: str,
    echo: Callable[[str], None],
    *,
    timeout: float | None = None,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Any | None:
    """Print the job's log as it grows until it ends; its final ``JobDetails``, or None on timeout.

    Polls (status, then the whole log) every ``poll`` seconds and prints only the
    new part; after the job ends, the log is read once more so its last lines
    are never lost.
    """
    deadline = None if timeout is None else clock() + timeout
    printed = 0
    while True:
        try:
            info = job_info(client, job_id)
            logs = client.get_job_logs(job_id)
        except OSError as exc:  # requests' errors are OSErrors: the tunnel or the head went away
            raise LostContact(client.get_address(), job_id, exc) from exc
        if len(logs) < printed:  # the server restarted its log file: print it whole
            printed = 0
        if len(logs) > printed:
            echo(logs[printed:].rstrip("\n"))
            printed = len(logs)
        if info.status.is_terminal():
            return info
        if deadline is not None and clock() >= deadline:
            return None
        time.sleep(poll)


def exit_code(info: Any) -> int:
    """The CLI exit code a finished job maps to: the driver's own (0, 1, 2) when Ray knows it."""
    if str(info.status) == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    if isinstance(code, int) and code in (1, 2):
        return code
    return 1


def describe(info: Any) -> dict[str, str]:
    """The fields ``sweep status JOB`` prints, as strings."""
    meta = info.metadata or {}

    def when(ms: int | None) -> str:
        if not ms:
            return "-"
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    fields = {
        "job": str(info.submission_id),
        "status": str(info.status),
        "sweep": meta.get("sweep_name", "-"),
        "output": meta.get("output", "-"),
        "started": when(info.start_time),
        "ended": when(info.end_time),
        "entrypoint": str(info.entrypoint),
        "message": (info.message or "").strip() or "-",
    }
    code = getattr(info, "driver_exit_code", None)
    if code is not None:
        fields["exit code"] = str(code)
    return fields


def list_sweep_jobs(client: Any, *, include_all: bool = False) -> list[Any]:
    """This cluster's jobs, oldest first; only sweep jobs unless ``include_all``."""
    jobs = [j for j in client.list_jobs() if j.submission_id]  # drop plain `ray.init` drivers
    if not include_all:
        jobs = [j for j in jobs if METADATA_KEY in (j.metadata or {})]
    return sorted(jobs, key=lambda j: j.start_time or 0)


# -- the job side ------------------------------------------------------------------------------


def job_main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint of a sweep job on the head: ``sweep run SPEC --address auto``.

    Prints where it runs first (host, versions, the cluster's CPUs and GPUs), so
    the job log says what ran where; returns ``sweep run``'s exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sweep.submission",
        description="Run a sweep inside a Ray job (joins the job's cluster: --address auto).",
    )
    parser.add_argument("spec", help="the spec file, relative to the job's working_dir")
    parser.add_argument("--fresh", action="store_true", help="recompute every cell")
    args = parser.parse_args(argv)

    import ray

    from sweep import __version__
    from sweep.cli.main import cli

    print(
        f"attack-sweep {__version__} (ray {ray.__version__}, python {sys.version.split()[0]} "
        f"at {sys.executable}) on {socket.gethostname()}, working dir {os.getcwd()}",
        flush=True,
    )
    # no terminal here: the progress line is plain text every 10 s and when the worker
    # pool changes (what it waits for, workers placed, nodes), which `sweep logs` shows
    command = ["run", args.spec, "--address", "auto"]
    if args.fresh:
        command.append("--fresh")
    try:
        cli.main(command, prog_name="sweep", standalone_mode=True)
    except SystemExit as exc:  # click always ends with SystemExit in standalone mode
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(job_main())
