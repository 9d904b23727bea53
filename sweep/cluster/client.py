"""The client end of a sweep job: the Ray dashboard's address and the token that opens it.

``sweep submit / status / logs`` talk to Ray's Job Submission REST API on the
head's dashboard (port 8265) through :func:`connect`; :mod:`sweep.cluster.status`
reads the state API at the same address with the same headers.

Where the address comes from: ``--address``, else ``$RAY_API_SERVER_ADDRESS``, else
``$RAY_ADDRESS`` (the order of Ray's own ``ray job`` commands; the CLI's shared
``address_option``, :mod:`sweep.cli.options`). Errors name the one that was used.

Token authentication (Ray >= 2.59 turns it on for clusters started with a
token): Ray's own client sends its token only when ``RAY_AUTH_MODE=token`` is set
in the *client's* environment, so a laptop without that variable gets "401
Unauthorized". :func:`auth_headers` always sends the token if one can be found,
from the same places and in the same order as Ray (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``), via Ray's own token loader.
Sending it to a cluster with authentication off is harmless.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from sweep.errors import SpecError

DEFAULT_DASHBOARD_PORT = 8265


def normalize_address(address: str | None, source: str = "--address") -> str:
    """``http(s)://host:port`` of a Ray dashboard; a bare ``host[:port]`` gets ``http://`` and 8265.

    Raises :class:`SpecError` (field ``source``: ``--address``, or the environment
    variable the address came from) for anything else, e.g. a GCS address like
    ``ray://...`` or ``auto``, which only work on the cluster itself.
    """
    if address is None or not str(address).strip():
        raise SpecError(
            source, address,
            "give the Ray dashboard's URL, e.g. http://127.0.0.1:8265 (after `ray dashboard "
            "cluster.yaml`), or set RAY_API_SERVER_ADDRESS (or RAY_ADDRESS)",
        )  # fmt: skip
    text = str(address).strip().rstrip("/")
    if text.lower() in ("auto", "local"):
        raise SpecError(
            source, address,
            "is an address for joining a cluster from one of its nodes (`sweep run --address "
            "auto`), not a Ray dashboard's URL; give one, e.g. http://127.0.0.1:8265",
        )  # fmt: skip
    if "://" not in text:
        text = f"http://{text}"
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https"):
        raise SpecError(
            source, address,
            f"expected an http(s):// URL of the Ray dashboard (got scheme {parsed.scheme!r}); "
            "Ray Jobs are submitted to the dashboard, port 8265 by default",
        )  # fmt: skip
    try:
        port = parsed.port
    except ValueError as exc:
        raise SpecError(source, address, f"bad port: {exc}") from exc
    if not parsed.hostname or parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise SpecError(source, address, "expected http(s)://HOST:PORT and nothing after it")
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


def connect(
    address: str | None,
    warn: Callable[[str], None] | None = None,
    *,
    source: str = "--address",
) -> Any:
    """A ``JobSubmissionClient`` for the dashboard at ``address``, authenticated if possible.

    Unreachable addresses and authentication failures are :class:`SpecError`
    (exit code 2): the user fixes them by changing the command or the token.
    ``warn`` receives a warning when the token would cross a network in clear text.
    ``source`` names where ``address`` came from in those errors (``--address``, or
    ``$RAY_ADDRESS`` when the option was left out).
    """
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = normalize_address(address, source)
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
        raise SpecError(source, url, _auth_hint(sent_token=bool(headers))) from exc
    except (ConnectionError, OSError) as exc:
        raise SpecError(
            source, url,
            "no Ray job server answers there; is the head running and its dashboard port "
            "reachable from here (`ray dashboard cluster.yaml` forwards it to "
            f"http://127.0.0.1:8265)? ({first_line(exc)}){_gcs_hint(source)}",
        ) from exc  # fmt: skip
    except RuntimeError as exc:  # e.g. "Jobs API is not supported on the Ray cluster"
        raise SpecError(source, url, first_line(exc)) from exc


def _gcs_hint(source: str) -> str:
    # RAY_ADDRESS is often the GCS address `ray.init` joins (HOST:6379), not the dashboard
    if source != "$RAY_ADDRESS":
        return ""
    return ("; $RAY_ADDRESS is often the GCS address for `ray.init` (port 6379): set "
            "RAY_API_SERVER_ADDRESS or --address to the dashboard's URL")


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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

