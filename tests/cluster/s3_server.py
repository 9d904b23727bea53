"""A real S3-compatible server on 127.0.0.1 for the object-store tests: moto's ``moto_server``.

It speaks the S3 REST API over HTTP (in memory), so pyarrow's own S3 client talks
to it exactly as to AWS, with ``endpoint_override`` pointing at it. It runs in a
session of its own and is stopped by its process group. Credentials are dummies
(moto accepts any), set in the environment the way AWS clients read them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.head import free_ports

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
START_TIMEOUT_S = 60.0
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata service
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT

    def uri(self, bucket: str, prefix: str) -> str:
        """An ``s3://`` URI for pyarrow that reaches this server."""
        return f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}&region=us-east-1"

    def create_bucket(self, bucket: str) -> None:
        import pyarrow.fs as pafs

        fs, _ = pafs.FileSystem.from_uri(
            f"s3://{bucket}?endpoint_override={self.endpoint}&region=us-east-1&allow_bucket_creation=true"
        )
        fs.create_dir(bucket)


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """Start ``moto_server`` on a free loopback port, wait until it answers, stop it after.

    The caller sets :data:`CREDENTIALS` in the environment for the pyarrow clients.
    """
    (port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{port}"
    # its request log goes to a file, so a full pipe never blocks it
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _answers(endpoint):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    err = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"moto_server did not come up (exit {process.poll()}): {err}")
                time.sleep(0.1)
            yield S3Server(endpoint=endpoint)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def list_objects(uri: str) -> dict[str, int]:
    """Every object under the URI's prefix: ``{key relative to the prefix: size}``."""
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {i.path[len(base) + 1 :]: i.size for i in infos if i.type == pafs.FileType.File}
