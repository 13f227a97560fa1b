"""A real S3-compatible server for the test suite: Ceph's radosgw on loopback.

``BALLAST_TEST_S3_URL`` (with ``BALLAST_TEST_S3_ACCESS_KEY``, ``BALLAST_TEST_S3_SECRET_KEY``
and optionally ``BALLAST_TEST_S3_REGION``) names a running server to use instead. Otherwise
the session starts a throwaway single-node Ceph cluster the first time a test asks for
``s3_server``: one monitor (cephx, an explicit msgr v1 address), one memstore OSD
(objects live in RAM, pool size 1) and one radosgw, then an S3 user with random keys.
It costs ~15 s and ~150 MB once per session and is removed at the end.

Fault tests put an `S3Proxy` (fixture ``s3_proxy``) between the client and the server:
a loopback TCP relay they can ``cut()`` (every open connection is reset, new ones are
refused) and ``restore()``.

Only loopback addresses are ever started or targeted.
"""

from __future__ import annotations

import contextlib
import secrets
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from ballast_testing.servers import (
    LOOPBACK,
    ServerUnavailableError,
    _env,
    _require_loopback,
    free_port,
)

S3_URL_ENV = "BALLAST_TEST_S3_URL"
S3_ACCESS_KEY_ENV = "BALLAST_TEST_S3_ACCESS_KEY"
S3_SECRET_KEY_ENV = "BALLAST_TEST_S3_SECRET_KEY"
S3_REGION_ENV = "BALLAST_TEST_S3_REGION"
# pgBackRest speaks only HTTPS to S3: the https URL of the same server (and the CA file
# that signed its certificate, if verification is wanted).
S3_TLS_URL_ENV = "BALLAST_TEST_S3_TLS_URL"
S3_CA_FILE_ENV = "BALLAST_TEST_S3_CA_FILE"
DEFAULT_REGION = "us-east-1"
CEPH_START_TIMEOUT = 90.0
CEPH_BINARIES = (
    "ceph-mon",
    "ceph-osd",
    "radosgw",
    "radosgw-admin",
    "ceph-authtool",
    "monmaptool",
    "ceph",
)

S3_INSTALL_HINT = (
    "Ceph binaries ({missing}) were not found. Install them with "
    "`apt-get install --no-install-recommends radosgw ceph-mon ceph-osd` "
    "(or `make install` as root), or point "
    f"{S3_URL_ENV} (+ {S3_ACCESS_KEY_ENV}, {S3_SECRET_KEY_ENV}) at a running S3-compatible server"
)


@dataclass
class S3Server:
    """Where an S3-compatible server answers and the credentials of one user on it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = DEFAULT_REGION
    # The same server over HTTPS (None: not offered) and the certificate to trust for it.
    tls_endpoint_url: str | None = None
    ca_file: Path | None = None
    _buckets: list[str] = field(default_factory=list, repr=False)

    def client(self, endpoint_url: str | None = None, **config: Any) -> Any:
        """A boto3 S3 client (path-style addressing) for this server or a proxy in front of it."""
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 1, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 30,
            **config,
        }
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(**options),
        )

    def create_bucket(self, prefix: str = "ballast-test") -> str:
        """Create a new, empty bucket with a random name and return the name.

        Buckets made here are emptied and removed when the session ends.
        """
        name = f"{prefix}-{secrets.token_hex(6)}".lower()
        self.client().create_bucket(Bucket=name)
        self._buckets.append(name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Abort pending multipart uploads, delete every object, then the bucket."""
        client = self.client()
        with contextlib.suppress(client.exceptions.NoSuchBucket):
            uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
            for upload in uploads:
                client.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=name, Key=item["Key"])
            client.delete_bucket(Bucket=name)

    def cleanup(self) -> None:
        for name in self._buckets:
            with contextlib.suppress(Exception):
                self.delete_bucket(name)
        self._buckets.clear()

    def ready(self) -> bool:
        """Whether the server answers an authenticated ``ListBuckets``."""
        try:
            self.client(connect_timeout=2, read_timeout=5).list_buckets()
        except Exception:
            return False
        return True


# --------------------------------------------------------------------------- Ceph


class LocalCeph:
    """A throwaway single-node Ceph cluster (mon + memstore OSD + radosgw) on loopback."""

    # The memstore OSD's capacity (in bytes). Memory is taken only as objects are
    # written (about 1.5 GB of the OSD's RSS per GiB stored), so the cap costs nothing
    # until used; it is large enough for the 6 GiB upload test (over S3's 5 GiB
    # single-copy limit) with room below the OSD's full ratios.
    memstore_bytes = 8 * 1024**3

    def __init__(self, base_dir: Path) -> None:
        self.base = base_dir
        self.conf = base_dir / "ceph.conf"
        self.mon_port = free_port()
        self.rgw_port = free_port()
        self.rgw_tls_port = free_port()
        self.fsid = str(uuid.uuid4())
        self.access_key = "BALLAST" + secrets.token_hex(6).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.processes: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def check_binaries() -> None:
        missing = [name for name in CEPH_BINARIES if shutil.which(name) is None]
        if missing:
            raise ServerUnavailableError(
                S3_INSTALL_HINT.format(missing=", ".join(missing))
            )

    # ---- helpers

    def _run(self, *cmd: str, timeout: float = 60) -> str:
        try:
            result = subprocess.run(
                list(cmd),
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerUnavailableError(
                f"`{' '.join(cmd)}` timed out after {timeout:.0f}s{self._logs()}"
            ) from exc
        if result.returncode != 0:
            raise ServerUnavailableError(
                f"`{' '.join(cmd)}` failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}{self._logs()}"
            )
        return result.stdout

    def _ceph(self, *args: str, timeout: float = 60) -> str:
        return self._run(
            "ceph",
            "-c",
            str(self.conf),
            "--connect-timeout",
            "30",
            *args,
            timeout=timeout,
        )

    def _spawn(self, *cmd: str) -> subprocess.Popen[bytes]:
        name = Path(cmd[0]).name
        with (self.base / "log" / f"{name}.out").open("ab") as out:
            proc = subprocess.Popen(
                list(cmd),
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(proc)
        return proc

    def _logs(self) -> str:
        tails = []
        for log in sorted((self.base / "log").glob("*")):
            with contextlib.suppress(OSError):
                lines = log.read_text(errors="replace").splitlines()[-15:]
                tails.append(f"--- {log.name}\n" + "\n".join(lines))
        return ("\n" + "\n".join(tails)) if tails else ""

    def _write_conf(self) -> None:
        base = self.base
        self.conf.write_text(f"""[global]
fsid = {self.fsid}
mon host = [v1:{LOOPBACK}:{self.mon_port}]
public addr = {LOOPBACK}
# msgr2 is off: the monitor listens on its explicit v1 address only.
ms bind msgr2 = false
ms bind ipv6 = false
# cephx on every hop: with `auth none` clients hang.
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {base}/client.admin.keyring
run dir = {base}/run
admin socket = {base}/run/$name.asok
pid file = {base}/run/$name.pid
log file = {base}/log/$name.log
log to stderr = false
err to stderr = true
mon data = {base}/mon/$cluster-$id
osd data = {base}/osd/$cluster-$id
# One OSD holding everything in memory: size-1 pools, no host-level failure domain.
osd objectstore = memstore
memstore device bytes = {self.memstore_bytes}
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd max object name len = 460
osd max object namespace len = 64
osd heartbeat grace = 60
mon osd down out interval = 0

[osd.0]
keyring = {base}/osd/ceph-0/keyring

[client.rgw.ballast]
keyring = {base}/client.rgw.keyring
rgw frontends = beast endpoint={LOOPBACK}:{self.rgw_port} ssl_endpoint={LOOPBACK}:{self.rgw_tls_port} ssl_certificate={base}/tls/cert.pem ssl_private_key={base}/tls/key.pem
rgw data = {base}/rgw
rgw enable usage log = false
rgw crypt require ssl = false
# A deleted object's data (its tail) is garbage-collected within seconds, not hours:
# the memstore OSD holds it in RAM until then (a deleted multi-GiB test object too).
rgw gc obj min wait = 5
rgw gc processor period = 10
""")

    def _make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1 (and localhost) for the https endpoint."""
        tls = self.base / "tls"
        tls.mkdir(exist_ok=True)
        self.base.chmod(0o711)  # reachable by name for that user, not listable
        self._run(
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"),
            "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        )  # fmt: skip
        for name in ("key.pem", "cert.pem"):
            (tls / name).chmod(0o644)  # pgBackRest may run as another user (postgres)

    # ---- lifecycle

    def start(self) -> S3Server:
        base = self.base
        for sub in ("run", "log", "mon/ceph-a", "osd/ceph-0", "rgw"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        self._make_certificate()
        authtool = "ceph-authtool"
        mon_keyring = str(base / "mon.keyring")
        admin_keyring = str(base / "client.admin.keyring")
        osd_keyring = str(base / "osd/ceph-0/keyring")
        rgw_keyring = str(base / "client.rgw.keyring")
        # Every key is made up front and imported into the monitor's keyring, so the
        # monitor knows them all from its first start (no `ceph auth add` round trips).
        self._run(
            authtool,
            "--create-keyring",
            mon_keyring,
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        )
        self._run(
            authtool, "--create-keyring", admin_keyring, "--gen-key", "-n", "client.admin",
            "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *",
        )  # fmt: skip
        self._run(
            authtool, "--create-keyring", osd_keyring, "--gen-key", "-n", "osd.0",
            "--cap", "mon", "allow profile osd", "--cap", "osd", "allow *", "--cap", "mgr", "allow profile osd",
        )  # fmt: skip
        self._run(
            authtool, "--create-keyring", rgw_keyring, "--gen-key", "-n", "client.rgw.ballast",
            "--cap", "mon", "allow rw", "--cap", "osd", "allow rwx",
        )  # fmt: skip
        for keyring in (admin_keyring, osd_keyring, rgw_keyring):
            self._run(authtool, mon_keyring, "--import-keyring", keyring)
        monmap = str(base / "monmap")
        self._run(
            "monmaptool", "--create", "--fsid", self.fsid,
            "--addv", "a", f"[v1:{LOOPBACK}:{self.mon_port}]", monmap,
        )  # fmt: skip
        conf = str(self.conf)
        self._run(
            "ceph-mon",
            "-c",
            conf,
            "--mkfs",
            "-i",
            "a",
            "--monmap",
            monmap,
            "--keyring",
            mon_keyring,
        )
        self._spawn("ceph-mon", "-c", conf, "-i", "a", "-f")
        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise ServerUnavailableError(
                f"expected OSD id 0, the monitor gave {osd_id!r}"
            )
        self._run("ceph-osd", "-c", conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._spawn("ceph-osd", "-c", conf, "-i", "0", "-f")
        self._spawn("radosgw", "-c", conf, "-n", "client.rgw.ballast", "-f")
        server = S3Server(
            endpoint_url=f"http://{LOOPBACK}:{self.rgw_port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            tls_endpoint_url=f"https://{LOOPBACK}:{self.rgw_tls_port}",
            ca_file=self.base / "tls" / "cert.pem",
        )
        self._wait_http(timeout=CEPH_START_TIMEOUT)
        self._run(
            "radosgw-admin", "-c", conf, "user", "create", "--uid", "ballast-test",
            "--display-name", "Ballast tests",
            "--access-key", self.access_key, "--secret-key", self.secret_key,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not server.ready():
            if time.monotonic() > deadline:
                raise ServerUnavailableError(
                    f"radosgw on port {self.rgw_port} never accepted the test user{self._logs()}"
                )
            self._check_alive()
            time.sleep(0.1)
        return server

    def _check_alive(self) -> None:
        for proc in self.processes:
            if proc.poll() is not None:
                raise ServerUnavailableError(
                    f"{proc.args[0]} exited with {proc.returncode}{self._logs()}"
                )

    def _wait_http(self, timeout: float) -> None:
        """radosgw answers HTTP once its pools exist (which needs the OSD up)."""
        deadline = time.monotonic() + timeout
        url = f"http://{LOOPBACK}:{self.rgw_port}/"
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means the gateway serves requests
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerUnavailableError(
                    f"radosgw did not answer on port {self.rgw_port} within {timeout:.0f}s{self._logs()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        # Everything lives in memory and is thrown away: SIGKILL is safe and saves the
        # ~10 s a graceful radosgw/OSD shutdown takes.
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.kill()
        for proc in self.processes:
            proc.wait(timeout=10)
        self.processes.clear()

    @classmethod
    @contextlib.contextmanager
    def throwaway(cls) -> Iterator[S3Server]:
        cls.check_binaries()
        base = Path(tempfile.mkdtemp(prefix="ballast-ceph-"))
        cluster = cls(base)
        try:
            yield cluster.start()
        finally:
            cluster.stop()
            shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def provide_s3() -> Iterator[S3Server]:
    """The server named by ``BALLAST_TEST_S3_URL``, else a throwaway radosgw."""
    url = _env(S3_URL_ENV)
    if url:
        _require_loopback(urlsplit(url).hostname, url)
        access, secret = _env(S3_ACCESS_KEY_ENV), _env(S3_SECRET_KEY_ENV)
        if not access or not secret:
            raise ServerUnavailableError(
                f"{S3_URL_ENV} is set but {S3_ACCESS_KEY_ENV} / {S3_SECRET_KEY_ENV} are not"
            )
        ca_file = _env(S3_CA_FILE_ENV)
        server = S3Server(
            url.rstrip("/"),
            access,
            secret,
            _env(S3_REGION_ENV) or DEFAULT_REGION,
            tls_endpoint_url=_env(S3_TLS_URL_ENV),
            ca_file=Path(ca_file) if ca_file else None,
        )
        if not server.ready():
            raise ServerUnavailableError(
                f"{S3_URL_ENV}={url} does not answer ListBuckets"
            )
        try:
            yield server
        finally:
            server.cleanup()
        return
    with LocalCeph.throwaway() as server:
        try:
            yield server
        finally:
            server.cleanup()


# --------------------------------------------------------------------------- fault proxy


class S3Proxy:
    """A loopback TCP relay in front of a server that tests can cut and restore.

    ``cut()`` resets every open connection and makes new ones fail (connection
    refused is simulated by accepting and resetting at once); ``restore()`` relays again.
    ``cut_after(n)`` cuts automatically once ``n`` bytes have gone upstream, which lands
    the fault in the middle of an upload. ``throttle(rate)`` relays answers at ``rate``
    bytes a second, so a cut lands in the middle of a download (unthrottled, a whole
    object can sit in the client's socket buffer before the cut).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut = False
        self._cut_after: int | None = None
        self._rate: float | None = None
        self._sent = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop, name="s3-proxy", daemon=True
        )
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def bytes_upstream(self) -> int:
        """Bytes relayed from clients to the server since the last restore()."""
        return self._sent

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until restore()."""
        with self._lock:
            self._cut = True
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def cut_after(self, nbytes: int) -> None:
        """Cut once ``nbytes`` more bytes have been relayed upstream."""
        with self._lock:
            self._cut_after = self._sent + nbytes

    def throttle(self, bytes_per_s: float | None) -> None:
        """Relay answers (server to client) at most this fast (None: at full speed)."""
        self._rate = bytes_per_s

    def restore(self) -> None:
        with self._lock:
            self._cut = False
            self._cut_after = None
            self._rate = None
            self._sent = 0

    def close(self) -> None:
        self._stopped.set()
        self.cut()
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(
                target=self._relay,
                args=(client, upstream),
                name="s3-proxy-relay",
                daemon=True,
            ).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            while not self._cut and not self._stopped.is_set():
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    dst: socket.socket = key.data
                    rate = self._rate if src is upstream else None
                    data = src.recv(16384 if rate else 65536)
                    if not data:
                        return
                    if rate:
                        time.sleep(len(data) / rate)
                    if src is client:
                        with self._lock:
                            self._sent += len(data)
                            trip = (
                                self._cut_after is not None
                                and self._sent >= self._cut_after
                            )
                        if trip:
                            self.cut()
                            return
                    dst.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            for sock in (client, upstream):
                _reset(sock)
            with self._lock:
                if (client, upstream) in self._pairs:
                    self._pairs.remove((client, upstream))


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) so the peer sees a hard connection failure."""
    with contextlib.suppress(OSError):
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
    with contextlib.suppress(OSError):
        sock.close()
