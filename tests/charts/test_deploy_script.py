"""scripts/deploy.py: blue-green status / stage / promote / rollback / retire against fakes.

No cluster can run here, so kubectl and helm are small scripts answering from JSON files and
recording every invocation; `kubectl port-forward` points at a real HTTP server in the test
that plays the preview api and ui (and Prometheus' query API). The real helm command line of
stage is checked against the real chart with `helm template`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import CHART, ROOT, find, helm, render

DEPLOY = ROOT / "scripts" / "deploy.py"
SMOKE_USER, SMOKE_PASSWORD = "smoke", "s3cret-smoke"


def _deploy_module() -> Any:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import deploy  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return deploy


REPO = "ghcr.io/example/ballast"


def _deployment(
    name: str,
    replicas: int,
    ready: int,
    containers: dict[str, str] | None = None,
    init: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment; `containers` and `init` map container names to images."""
    pod: dict[str, Any] = {
        "containers": [{"name": n, "image": i} for n, i in (containers or {}).items()]
    }
    if init:
        pod["initContainers"] = [{"name": n, "image": i} for n, i in init.items()]
    return {
        "metadata": {"name": name, "generation": 2},
        "spec": {"replicas": replicas, "template": {"spec": pod}},
        "status": {
            "observedGeneration": 2,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
        },
    }


def _service(name: str, color: str, port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {}},
        "spec": {
            "selector": {
                "app.kubernetes.io/name": "ballast",
                "ballast.io/color": color,
            },
            "ports": [{"name": "http", "port": port}],
        },
    }


KUBECTL = """
import json, pathlib, sys, time
root = pathlib.Path(ROOT)
args = sys.argv[1:]
with open(root / "calls.log", "a") as log:
    log.write(json.dumps(["kubectl", *args]) + "\\n")
def load(kind, name):
    f = root / f"{kind}-{name}.json"
    return json.loads(f.read_text()) if f.exists() else None
def save(kind, name, doc):
    (root / f"{kind}-{name}.json").write_text(json.dumps(doc))
def listed(fname, name):
    f = root / fname
    return f.exists() and name in f.read_text().split()
if args[0] == "version":
    if not REACHABLE:
        print("The connection to the server localhost:8080 was refused", file=sys.stderr); sys.exit(1)
    print(json.dumps({"clientVersion": {}, "serverVersion": {"gitVersion": "v1.31.0"}})); sys.exit(0)
if args[0] == "get":
    doc = load(args[1], args[2])
    if doc is None:
        print(f'Error from server (NotFound): {args[1]}s "{args[2]}" not found', file=sys.stderr); sys.exit(1)
    print(json.dumps(doc)); sys.exit(0)
if args[0] == "scale":
    name = args[1].split("/", 1)[1]
    n = int(next(a for a in args if a.startswith("--replicas=")).split("=")[1])
    doc = load("deployment", name)
    doc["spec"]["replicas"] = n
    doc["status"]["updatedReplicas"] = n
    if not listed("stuck", name):
        doc["status"]["readyReplicas"] = n
    save("deployment", name, doc); print(f"deployment.apps/{name} scaled"); sys.exit(0)
if args[:2] == ["rollout", "status"]:
    doc = load("deployment", args[2].split("/", 1)[1])
    if doc["status"]["readyReplicas"] == doc["spec"]["replicas"]:
        print("successfully rolled out"); sys.exit(0)
    print("error: timed out waiting for the condition", file=sys.stderr); sys.exit(1)
if args[:2] == ["patch", "service"]:
    name = args[2]
    if listed("patch-fail", name):
        print(f'Error from server (Forbidden): services "{name}" is forbidden', file=sys.stderr); sys.exit(1)
    body = json.loads(args[args.index("-p") + 1])
    doc = load("service", name)
    doc["spec"]["selector"].update(body["spec"]["selector"])
    notes = doc["metadata"].setdefault("annotations", {})
    for k, v in body.get("metadata", {}).get("annotations", {}).items():
        if v is None:
            notes.pop(k, None)
        else:
            notes[k] = v
    save("service", name, doc); print(f"service/{name} patched"); sys.exit(0)
if args[:2] == ["set", "image"]:
    name = args[2].split("/", 1)[1]
    if listed("set-image-fail", name):
        print(f'Error from server (Forbidden): deployments.apps "{name}" is forbidden', file=sys.stderr); sys.exit(1)
    doc = load("deployment", name)
    pod = doc["spec"]["template"]["spec"]
    for pair in args[3:args.index("-n")]:
        container, image = pair.split("=", 1)
        (match,) = [c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == container]
        match["image"] = image
    doc["metadata"]["generation"] += 1
    doc["status"]["observedGeneration"] = doc["metadata"]["generation"]
    if listed("stuck", name):
        doc["status"]["readyReplicas"] = 0
    save("deployment", name, doc); print(f"deployment.apps/{name} image updated"); sys.exit(0)
if args[0] == "port-forward":
    port = (root / "forward-port").read_text().strip()
    print(f"Forwarding from 127.0.0.1:{port} -> {args[2][1:]}", flush=True)
    time.sleep(60); sys.exit(0)
sys.exit(2)
"""

HELM = """
import json, pathlib, sys
root = pathlib.Path(ROOT)
args = sys.argv[1:]
with open(root / "calls.log", "a") as log:
    log.write(json.dumps(["helm", *args]) + "\\n")
if args[:2] == ["get", "values"]:
    print((root / "values.json").read_text()); sys.exit(0)
if args[0] == "upgrade":
    sys.exit(0)
sys.exit(2)
"""


class Backend:
    """The preview api and ui, and Prometheus' query API, on one local port."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.password = SMOKE_PASSWORD
        self.readyz = 200
        self.error_ratio: list[str] = ["0.001"]
        self.p95: list[str] = ["0.12"]
        self.drafts: dict[str, Any] = {}
        self.queries: list[str] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any = None) -> None:
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                backend.record(self.command, url.path)
                authed = self.headers.get("Authorization") == "Bearer t0ken"
                route = (self.command, url.path)
                if route == ("GET", "/api/v1/query"):
                    self._send(200, backend.prometheus(query["query"][0]))
                elif route == ("GET", "/healthz"):
                    self._send(200, {"status": "ok"})
                elif route == ("GET", "/readyz"):
                    self._send(backend.readyz, {"status": "ready"})
                elif route == ("GET", "/_stcore/health"):
                    self._send(200, "ok")
                elif route == ("POST", "/v1/sessions"):
                    ok = body == {"username": SMOKE_USER, "password": backend.password}
                    self._send(*((201, {"token": "t0ken"}) if ok else (401, {})))
                elif not authed:
                    self._send(401, {})
                elif route == ("GET", "/v1/sessions/me"):
                    self._send(200, {"username": SMOKE_USER})
                elif route == ("GET", "/v1/projects"):
                    self._send(200, {"items": [], "total": 0})
                elif route == ("PUT", "/v1/drafts"):
                    assert self.headers.get("Idempotency-Key")
                    for item in body["items"]:
                        backend.drafts[item["field"]] = item
                    self._send(200, {"items": []})
                elif route == ("GET", "/v1/drafts"):
                    self._send(200, list(backend.drafts.values()))
                elif route == ("DELETE", "/v1/drafts"):
                    backend.drafts.clear()
                    self._send(200, {"deleted": 1})
                elif route == ("DELETE", "/v1/sessions/current"):
                    self._send(204)
                else:
                    self._send(404, {})

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def record(self, method: str, path: str) -> None:
        with self.log.open("a") as log:
            log.write(json.dumps(["http", method, path]) + "\n")

    def prometheus(self, query: str) -> dict[str, Any]:
        self.queries.append(query)
        values = self.error_ratio if "status=~" in query else self.p95
        value = values.pop(0) if len(values) > 1 else values[0]
        result = [] if value == "none" else [{"metric": {}, "value": [0, value]}]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeCluster:
    """Fake kubectl/helm executables reading and writing their state in a directory."""

    def __init__(self, root: Path, reachable: bool = True) -> None:
        self.root = root
        self.calls = root / "calls.log"
        self.values: dict[str, Any] = {"activeColor": "blue", "image": {"tag": "1.0.0"}}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.kubectl = self._script("kubectl", KUBECTL, reachable)
        self.helm = self._script("helm", HELM, reachable)

    def _script(self, name: str, body: str, reachable: bool) -> Path:
        path = self.root / name
        code = body.replace("ROOT", repr(str(self.root))).replace(
            "REACHABLE", repr(reachable)
        )
        path.write_text(f"#!{sys.executable}\n{code}")
        path.chmod(0o755)
        return path

    def sync(self) -> None:
        (self.root / "values.json").write_text(json.dumps(self.values))
        for (kind, name), doc in self.objects.items():
            (self.root / f"{kind}-{name}.json").write_text(json.dumps(doc))

    def read(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads((self.root / f"{kind}-{name}.json").read_text())

    def selector(self, service: str) -> str:
        return str(
            self.read("service", service)["spec"]["selector"]["ballast.io/color"]
        )

    def flag(self, fname: str, *names: str) -> None:
        (self.root / fname).write_text("\n".join(names))

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.sync()
        cmd = [
            sys.executable,
            str(DEPLOY),
            *args,
            "--release",
            "ballast",
            "--namespace",
            "apps",
            "--helm",
            str(self.helm),
            "--kubectl",
            str(self.kubectl),
        ]
        return subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=60, env=env
        )

    def log(self) -> list[list[str]]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines()]

    def helm_calls(self) -> list[list[str]]:
        return [c[1:] for c in self.log() if c[0] == "helm"]

    def upgrades(self) -> list[list[str]]:
        return [c for c in self.helm_calls() if c[0] == "upgrade"]

    def kubectl_calls(self, verb: str) -> list[list[str]]:
        return [c[1:] for c in self.log() if c[0] == "kubectl" and c[1] == verb]

    def patches(self) -> list[tuple[str, str]]:
        """(Service, colour) of every patch attempted, in order."""
        out = []
        for call in self.kubectl_calls("patch"):
            body = json.loads(call[call.index("-p") + 1])
            out.append((call[2], body["spec"]["selector"]["ballast.io/color"]))
        return out

    def index(self, entry: list[str]) -> int:
        return self.log().index(entry)

    def first(self, kind: str, verb: str = "") -> int:
        log = self.log()
        return next(
            i for i, c in enumerate(log) if c[0] == kind and (not verb or c[1] == verb)
        )


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(tmp_path / "calls.log")
    yield b
    b.close()


@pytest.fixture
def cluster(tmp_path: Path, backend: Backend) -> FakeCluster:
    """Blue live at 1.0.0 (api 2, ui 3 replicas); green staged at 1.1.0, one replica each."""
    c = FakeCluster(tmp_path)
    # Every `kubectl port-forward` of the fake lands on the test's backend.
    (tmp_path / "forward-port").write_text(str(backend.port))
    c.values["colors"] = {
        "blue": {"tag": "1.0.0"},
        "green": {"enabled": True, "tag": "1.1.0"},
    }
    replicas = {"api": 2, "ui": 3}
    for component, port in (("api", 8000), ("ui", 8501)):
        for color, n, tag in (
            ("blue", replicas[component], "1.0.0"),
            ("green", 1, "1.1.0"),
        ):
            name = f"ballast-{component}-{color}"
            image = f"{REPO}-{component}:{tag}"
            c.objects[("deployment", name)] = _deployment(
                name, n, n, {component: image}
            )
        c.objects[("service", f"ballast-{component}")] = _service(
            f"ballast-{component}", "blue", port
        )
        c.objects[("service", f"ballast-{component}-preview")] = _service(
            f"ballast-{component}-preview", "green", port
        )
    # Background work on the live release (stage pins it there); the worker has a
    # sidecar of another image, which never moves.
    c.objects[("deployment", "ballast-worker")] = _deployment(
        "ballast-worker",
        2,
        2,
        {"worker": f"{REPO}-jobs:1.0.0", "proxy": "example.org/proxy:9.9"},
        init={"wait-for-migrations": f"{REPO}-jobs:1.0.0"},
    )
    c.objects[("deployment", "ballast-backup-exporter")] = _deployment(
        "ballast-backup-exporter", 1, 1, {"exporter": f"{REPO}-backup:1.0.0"}
    )
    c.objects[("secret", "ballast-smoke-test")] = {
        "data": {
            "username": "c21va2U=",  # smoke
            "password": "czNjcmV0LXNtb2tl",  # s3cret-smoke
        }
    }
    return c


def _live_on_green(cluster: FakeCluster) -> None:
    for component in ("api", "ui"):
        cluster.objects[("service", f"ballast-{component}")]["spec"]["selector"][
            "ballast.io/color"
        ] = "green"
        cluster.objects[("service", f"ballast-{component}-preview")]["spec"][
            "selector"
        ]["ballast.io/color"] = "blue"


ROUTES = ["ballast-api", "ballast-ui", "ballast-api-preview", "ballast-ui-preview"]


# -- promote / rollback: routing only, after the gate -----------------------------------


def test_promote_scales_smoke_tests_then_patches_only_the_selectors(
    cluster: FakeCluster,
) -> None:
    proc = cluster.run("promote")
    assert proc.returncode == 0, proc.stderr
    assert "traffic is on green" in proc.stdout
    # Routing only: helm is asked for the values and nothing else.
    assert [c[:2] for c in cluster.helm_calls()] == [["get", "values"]]
    # The idle colour was brought to the live colour's replica counts, then waited for;
    # only green was waited on before the switch (the workers follow it, below).
    scales = cluster.kubectl_calls("scale")
    assert [c[1:3] for c in scales] == [
        ["deployment/ballast-api-green", "--replicas=2"],
        ["deployment/ballast-ui-green", "--replicas=3"],
    ]
    switch = cluster.first("kubectl", "patch")
    waited = [
        c[3]
        for c in cluster.log()[:switch]
        if c[0] == "kubectl" and c[1:3] == ["rollout", "status"]
    ]
    assert waited == ["deployment/ballast-api-green", "deployment/ballast-ui-green"]
    # The smoke test went through the preview Services, before any patch.
    forwards = [c[1] for c in cluster.kubectl_calls("port-forward")]
    assert forwards == ["svc/ballast-api-preview", "svc/ballast-ui-preview"]
    smoke = [c[1:] for c in cluster.log() if c[0] == "http"]
    for step in (
        ["GET", "/healthz"],
        ["GET", "/readyz"],
        ["POST", "/v1/sessions"],
        ["GET", "/v1/projects"],
        ["PUT", "/v1/drafts"],
        ["GET", "/v1/drafts"],
        ["DELETE", "/v1/drafts"],
        ["GET", "/_stcore/health"],
    ):
        assert step in smoke
    last_check = max(i for i, c in enumerate(cluster.log()) if c[0] == "http")
    assert last_check < cluster.first("kubectl", "patch")
    assert max(cluster.index(["kubectl", *c]) for c in scales) < last_check
    # The switch: active Services to green, previews to the old colour.
    assert cluster.patches() == [
        ("ballast-api", "green"),
        ("ballast-ui", "green"),
        ("ballast-api-preview", "blue"),
        ("ballast-ui-preview", "blue"),
    ]
    assert [cluster.selector(s) for s in ROUTES] == ["green", "green", "blue", "blue"]
    notes = cluster.read("service", "ballast-ui")["metadata"]["annotations"]
    assert notes["ballast.io/switched-from"] == "blue"
    assert datetime.fromisoformat(notes["ballast.io/switched-at"]) <= datetime.now(UTC)


def test_promote_and_rollback_never_run_helm_upgrade_nor_the_local_chart(
    cluster: FakeCluster,
) -> None:
    assert cluster.run("promote", "--chart", str(CHART)).returncode == 0
    cluster.objects.clear()  # keep the state the fakes wrote
    proc = cluster.run("rollback")
    assert proc.returncode == 0, proc.stderr
    assert [cluster.selector(s) for s in ROUTES] == ["blue", "blue", "green", "green"]
    for call in cluster.helm_calls():
        assert call[0] != "upgrade", call
        assert str(CHART) not in call
    for call in cluster.log():
        assert str(CHART) not in call


def test_a_failed_second_patch_puts_the_first_back(cluster: FakeCluster) -> None:
    cluster.flag("patch-fail", "ballast-ui")
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "refusing to promote: patching ballast-ui failed" in proc.stderr
    assert "every Service was put back on blue" in proc.stderr
    assert "traffic stays on blue" in proc.stderr
    assert cluster.patches() == [
        ("ballast-api", "green"),
        ("ballast-ui", "green"),
        ("ballast-api", "blue"),
    ]
    assert [cluster.selector(s) for s in ROUTES] == ["blue", "blue", "green", "green"]
    assert "ballast.io/switched-at" not in (
        cluster.read("service", "ballast-api")["metadata"]["annotations"]
    )
    # What promote scaled up is scaled back: all or nothing.
    assert cluster.read("deployment", "ballast-api-green")["spec"]["replicas"] == 1
    assert cluster.read("deployment", "ballast-ui-green")["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("password", "smoke test failed: login as smoke answered HTTP 401, not 201"),
        ("readyz", "smoke test failed: GET /readyz answered HTTP 503, not 200"),
    ],
)
def test_promote_refuses_when_the_smoke_test_fails(
    cluster: FakeCluster, backend: Backend, breakage: str, message: str
) -> None:
    if breakage == "password":
        backend.password = "rotated"
    else:
        backend.readyz = 503
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert (
        f"error: refusing to promote: {message}; traffic stays on blue" in proc.stderr
    )
    assert cluster.patches() == []
    assert cluster.selector("ballast-ui") == "blue"


def test_smoke_credentials_come_from_env_or_the_secret_or_nowhere(
    cluster: FakeCluster,
) -> None:
    del cluster.objects[("secret", "ballast-smoke-test")]
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert "no smoke-test credentials: set BALLAST_SMOKE_USERNAME" in proc.stderr
    assert cluster.patches() == []
    assert cluster.kubectl_calls("scale") == []
    env = {
        "PATH": "/usr/bin:/bin",
        "BALLAST_SMOKE_USERNAME": SMOKE_USER,
        "BALLAST_SMOKE_PASSWORD": SMOKE_PASSWORD,
    }
    proc = cluster.run("promote", env=env)
    assert proc.returncode == 0, proc.stderr
    assert cluster.selector("ballast-api") == "green"


def test_promote_refuses_while_preview_is_not_ready(cluster: FakeCluster) -> None:
    cluster.flag("stuck", "ballast-api-green")
    proc = cluster.run("promote", "--ready-timeout", "5")
    assert proc.returncode == 1
    assert (
        "refusing to promote: ballast-api-green not ready within 5s "
        "(error: timed out waiting for the condition); traffic stays on blue"
    ) in proc.stderr
    assert cluster.patches() == []
    assert cluster.kubectl_calls("port-forward") == []
    assert cluster.read("deployment", "ballast-api-green")["spec"]["replicas"] == 1


def test_promote_refuses_when_preview_is_not_deployed(cluster: FakeCluster) -> None:
    for component in ("api", "ui"):
        del cluster.objects[("deployment", f"ballast-{component}-green")]
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert "green is not deployed (api: not deployed" in proc.stderr
    assert "patch service ballast-api" in proc.stdout  # what it would have run
    assert cluster.patches() == []
    assert cluster.upgrades() == []


def test_rollback_is_refused_after_a_contract_migration(cluster: FakeCluster) -> None:
    _live_on_green(cluster)
    cluster.values["colors"]["green"]["contract"] = True
    proc = cluster.run("rollback")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "refusing to roll back: green's release contracted the schema" in proc.stderr
    assert "fix forward" in proc.stderr
    assert cluster.patches() == []
    assert cluster.kubectl_calls("scale") == []
    # Without the mark the same rollback goes through.
    cluster.values["colors"]["green"]["contract"] = False
    assert cluster.run("rollback").returncode == 0
    assert cluster.selector("ballast-api") == "blue"


def test_rollback_dry_run_changes_nothing(cluster: FakeCluster) -> None:
    _live_on_green(cluster)
    proc = cluster.run("rollback", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would run: " in proc.stdout
    assert '"ballast.io/color":"blue"' in proc.stdout
    assert "dry run: nothing changed" in proc.stdout
    assert cluster.patches() == []
    assert cluster.kubectl_calls("scale") == []
    assert cluster.kubectl_calls("port-forward") == []


def test_gate_only_checks_and_does_not_switch(cluster: FakeCluster) -> None:
    proc = cluster.run("promote", "--gate-only")
    assert proc.returncode == 0, proc.stderr
    assert "green passed the gate; not switching (--gate-only)" in proc.stdout
    assert cluster.kubectl_calls("port-forward")
    assert cluster.patches() == []
    # Scaled for the switch that follows (an Argo CD sync of activeColor).
    assert cluster.read("deployment", "ballast-ui-green")["spec"]["replicas"] == 3


def test_interrupted_switch_is_reported_not_guessed(cluster: FakeCluster) -> None:
    cluster.objects[("service", "ballast-ui")]["spec"]["selector"][
        "ballast.io/color"
    ] = "green"
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert (
        "the active Services disagree (ballast-api selects blue, ballast-ui selects green)"
        in (proc.stderr)
    )
    assert cluster.patches() == []


# -- background work follows the traffic ---------------------------------------------------


def _images(cluster: FakeCluster, name: str) -> dict[str, str]:
    """Container name -> image of a Deployment as the fake holds it now."""
    pod = cluster.read("deployment", name)["spec"]["template"]["spec"]
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    return {c["name"]: c["image"] for c in containers}


def _calls_from(cluster: FakeCluster, verb: str) -> list[tuple[int, list[str]]]:
    return [
        (i, c[1:])
        for i, c in enumerate(cluster.log())
        if c[0] == "kubectl" and c[1] == verb
    ]


def _on(cluster: FakeCluster, tag: str) -> None:
    """Put the worker and the exporter (every container of their image) on `tag`."""
    for name in ("ballast-worker", "ballast-backup-exporter"):
        pod = cluster.objects[("deployment", name)]["spec"]["template"]["spec"]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            if c["image"].startswith(REPO):
                c["image"] = c["image"].rsplit(":", 1)[0] + f":{tag}"


def test_promote_moves_the_workers_to_the_new_live_tag_after_the_switch(
    cluster: FakeCluster,
) -> None:
    proc = cluster.run("promote")
    assert proc.returncode == 0, proc.stderr
    assert _images(cluster, "ballast-worker") == {
        "wait-for-migrations": f"{REPO}-jobs:1.1.0",
        "worker": f"{REPO}-jobs:1.1.0",
        "proxy": "example.org/proxy:9.9",  # a sidecar of another image stays
    }
    assert _images(cluster, "ballast-backup-exporter") == {
        "exporter": f"{REPO}-backup:1.1.0"
    }
    # One `kubectl set image` per Deployment, only after the last Service patch (so the
    # staged release took no job before it was live), then each rollout waited for.
    last_patch = max(i for i, _ in _calls_from(cluster, "patch"))
    sets = _calls_from(cluster, "set")
    assert [c for _, c in sets] == [
        [
            "set",
            "image",
            "deployment/ballast-worker",
            f"wait-for-migrations={REPO}-jobs:1.1.0",
            f"worker={REPO}-jobs:1.1.0",
            "-n",
            "apps",
        ],
        [
            "set",
            "image",
            "deployment/ballast-backup-exporter",
            f"exporter={REPO}-backup:1.1.0",
            "-n",
            "apps",
        ],
    ]
    assert min(i for i, _ in sets) > last_patch
    waits = [(i, c[2]) for i, c in _calls_from(cluster, "rollout") if i > last_patch]
    assert [w for _, w in waits] == [
        "deployment/ballast-worker",
        "deployment/ballast-backup-exporter",
    ]
    assert min(i for i, _ in waits) > max(i for i, _ in sets)
    assert "ballast-worker now runs 1.1.0 (green's release)" in proc.stdout
    assert "ballast-backup-exporter now runs 1.1.0 (green's release)" in proc.stdout


def test_rollback_moves_the_workers_back_to_the_old_release(
    cluster: FakeCluster,
) -> None:
    _live_on_green(cluster)
    _on(cluster, "1.1.0")  # where the promote put them
    proc = cluster.run("rollback")
    assert proc.returncode == 0, proc.stderr
    assert [cluster.selector(s) for s in ROUTES] == ["blue", "blue", "green", "green"]
    worker = _images(cluster, "ballast-worker")
    assert worker["worker"] == worker["wait-for-migrations"] == f"{REPO}-jobs:1.0.0"
    assert _images(cluster, "ballast-backup-exporter") == {
        "exporter": f"{REPO}-backup:1.0.0"
    }
    assert "ballast-worker now runs 1.0.0 (blue's release)" in proc.stdout
    # Still routing-only: no helm upgrade moved them.
    assert cluster.upgrades() == []


def test_workers_already_on_the_live_tag_are_not_patched(cluster: FakeCluster) -> None:
    # An old-style stage left them on the staged release already: nothing to move.
    _on(cluster, "1.1.0")
    proc = cluster.run("promote")
    assert proc.returncode == 0, proc.stderr
    assert cluster.kubectl_calls("set") == []
    waited = [c[2] for c in cluster.kubectl_calls("rollout")]
    assert waited == ["deployment/ballast-api-green", "deployment/ballast-ui-green"]
    assert "ballast-worker already runs 1.1.0 (green's release)" in proc.stdout
    # Only the one that is not there moves.
    cluster.calls.unlink()
    cluster.objects.clear()  # keep the state the fakes wrote
    (cluster.root / "deployment-ballast-backup-exporter.json").write_text(
        json.dumps(
            _deployment(
                "ballast-backup-exporter", 1, 1, {"exporter": f"{REPO}-backup:1.1.0"}
            )
        )
    )
    proc = cluster.run("rollback")
    assert proc.returncode == 0, proc.stderr
    assert [c[2] for c in cluster.kubectl_calls("set")] == [
        "deployment/ballast-worker",
        "deployment/ballast-backup-exporter",
    ]


def test_no_worker_deployments_is_not_an_error(cluster: FakeCluster) -> None:
    del cluster.objects[("deployment", "ballast-worker")]
    del cluster.objects[("deployment", "ballast-backup-exporter")]
    proc = cluster.run("promote")
    assert proc.returncode == 0, proc.stderr
    assert "no worker or backup exporter Deployment" in proc.stdout
    assert cluster.kubectl_calls("set") == []


def test_a_failed_worker_move_says_traffic_is_switched_and_how_to_finish(
    cluster: FakeCluster,
) -> None:
    cluster.flag("set-image-fail", "ballast-worker")
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    error = proc.stderr.strip()
    assert error.startswith(
        "error: traffic IS on green (the Services were switched), but the background "
        "work does not follow it yet: moving ballast-worker to 1.1.0 failed: "
        'Error from server (Forbidden): deployments.apps "ballast-worker" is forbidden '
        "(ballast-worker and ballast-backup-exporter keep their old image); finish with: "
    )
    # The switch stands: nothing was put back, nothing scaled back.
    assert [cluster.selector(s) for s in ROUTES] == ["green", "green", "blue", "blue"]
    assert cluster.read("deployment", "ballast-ui-green")["spec"]["replicas"] == 3
    assert "traffic is on green" in proc.stdout
    # The printed commands finish the job once the cause is fixed.
    finish = error.split("finish with: ", 1)[1]
    assert finish.count("kubectl set image") == 2
    assert finish.count("kubectl rollout status") == 2
    (cluster.root / "set-image-fail").unlink()
    for command in finish.split(" && "):
        argv = shlex.split(command)
        assert argv[0] == str(cluster.kubectl)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, (command, done.stderr)
    assert _images(cluster, "ballast-worker")["worker"] == f"{REPO}-jobs:1.1.0"
    assert _images(cluster, "ballast-backup-exporter")["exporter"].endswith(":1.1.0")


def test_a_worker_rollout_that_never_gets_ready_is_reported(
    cluster: FakeCluster,
) -> None:
    cluster.flag("stuck", "ballast-worker")
    proc = cluster.run("promote", "--ready-timeout", "5")
    assert proc.returncode == 1
    error = proc.stderr.strip()
    assert "error: traffic IS on green (the Services were switched)" in error
    assert "ballast-worker not rolled out on 1.1.0 within 5s" in error
    assert error.endswith(
        f"finish with: {cluster.kubectl} rollout status deployment/ballast-worker "
        f"--timeout=5s -n apps && {cluster.kubectl} rollout status "
        "deployment/ballast-backup-exporter --timeout=5s -n apps"
    )
    assert cluster.selector("ballast-api") == "green"


def test_promote_dry_run_prints_the_worker_move(cluster: FakeCluster) -> None:
    proc = cluster.run("promote", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"would run: {cluster.kubectl} set image deployment/ballast-worker "
        f"wait-for-migrations={REPO}-jobs:1.1.0 worker={REPO}-jobs:1.1.0 -n apps"
    ) in proc.stdout
    assert (
        f"would run: {cluster.kubectl} set image deployment/ballast-backup-exporter "
        f"exporter={REPO}-backup:1.1.0 -n apps"
    ) in proc.stdout
    assert (
        f"would run: {cluster.kubectl} rollout status deployment/ballast-worker "
        "--timeout=600s -n apps"
    ) in proc.stdout
    assert cluster.kubectl_calls("set") == []
    assert cluster.kubectl_calls("rollout") == []
    assert _images(cluster, "ballast-worker")["worker"] == f"{REPO}-jobs:1.0.0"


def test_gate_only_leaves_the_workers(cluster: FakeCluster) -> None:
    proc = cluster.run("promote", "--gate-only")
    assert proc.returncode == 0, proc.stderr
    assert cluster.kubectl_calls("set") == []
    assert "worker.tag and backup.exporter.tag 1.1.0" in proc.stdout


def test_a_colour_without_an_image_tag_is_refused_before_the_switch(
    cluster: FakeCluster,
) -> None:
    for component in ("api", "ui"):
        name = f"ballast-{component}-green"
        cluster.objects[("deployment", name)] = _deployment(
            name, 1, 1, {component: f"{REPO}-{component}@sha256:{'0' * 64}"}
        )
    proc = cluster.run("promote")
    assert proc.returncode == 1
    assert "refusing to promote: cannot tell which release green runs" in proc.stderr
    assert "traffic stays on blue" in proc.stderr
    assert cluster.patches() == []
    assert cluster.kubectl_calls("scale") == []


# -- the Prometheus gate ----------------------------------------------------------------


def _gate_args(backend: Backend) -> list[str]:
    return [
        "--prometheus-url",
        f"http://127.0.0.1:{backend.port}",
        "--gate-minutes",
        "0.001",
        "--gate-interval",
        "0.01",
    ]


def test_prometheus_gate_blocks_on_a_bad_error_ratio(
    cluster: FakeCluster, backend: Backend
) -> None:
    backend.error_ratio = ["0.2"]
    proc = cluster.run("promote", *_gate_args(backend))
    assert proc.returncode == 1
    assert (
        "Prometheus gate: green's api error ratio 0.2 is above 0.01 (poll 1)"
        in proc.stderr
    )
    assert cluster.patches() == []
    assert 'color="green"' in backend.queries[0]
    assert 'namespace="apps"' in backend.queries[0]


@pytest.mark.parametrize(
    ("error_ratio", "p95", "message"),
    [
        ("0.001", "2.5", "p95 2.5 is above 0.5"),
        ("none", "0.1", "no error ratio samples for green's api"),
        ("NaN", "0.1", "no error ratio samples"),
    ],
)
def test_prometheus_gate_blocks_on_slow_or_missing_data(
    cluster: FakeCluster, backend: Backend, error_ratio: str, p95: str, message: str
) -> None:
    backend.error_ratio, backend.p95 = [error_ratio], [p95]
    proc = cluster.run("promote", *_gate_args(backend))
    assert proc.returncode == 1
    assert message in proc.stderr
    assert cluster.patches() == []


def test_prometheus_gate_holds_then_switches(
    cluster: FakeCluster, backend: Backend
) -> None:
    proc = cluster.run("promote", *_gate_args(backend))
    assert proc.returncode == 0, proc.stderr
    assert "Prometheus gate held" in proc.stdout
    queries = [
        i for i, c in enumerate(cluster.log()) if c[1:] == ["GET", "/api/v1/query"]
    ]
    assert queries
    assert max(queries) < cluster.first("kubectl", "patch")


def test_prometheus_gate_polls_for_the_whole_duration(backend: Backend) -> None:
    """Driven by a fake clock: 2 minutes at 30 s polls is 5 polls; a breach on poll 3 stops it."""
    deploy = _deploy_module()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    gate = deploy.Gate(f"http://127.0.0.1:{backend.port}", 0.01, 0.5, 2.0, 30.0, "5m")
    deploy.prometheus_gate(gate, "apps", "green", sleep=sleep, clock=lambda: now[0])
    assert len(backend.queries) == 2 * 5
    assert now[0] == 120.0
    backend.queries.clear()
    backend.error_ratio = ["0.001", "0.001", "0.05"]
    now[0] = 0.0
    with pytest.raises(
        deploy.DeployError, match=r"error ratio 0\.05 is above 0\.01 \(poll 3\)"
    ):
        deploy.prometheus_gate(gate, "apps", "green", sleep=sleep, clock=lambda: now[0])


# -- status, stage, retire ----------------------------------------------------------------


def test_no_cluster_is_a_clear_refusal(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, reachable=False)
    for command in ("promote", "rollback", "status", "retire"):
        proc = cluster.run(command)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1
        assert "no Kubernetes cluster reachable" in proc.stderr
        assert "connection to the server" in proc.stderr
    assert cluster.upgrades() == []


@pytest.mark.parametrize(
    "command", ["status", "stage", "promote", "rollback", "retire"]
)
def test_every_command_has_help(command: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(DEPLOY), command, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout


def test_status_reports_both_colours_and_a_stale_helm_value(
    cluster: FakeCluster,
) -> None:
    cluster.objects[("deployment", "ballast-api-green")] = _deployment(
        "ballast-api-green", 1, 0
    )
    proc = cluster.run("status")
    assert proc.returncode == 0, proc.stderr
    active, preview, worker, exporter = proc.stdout.splitlines()
    assert active.split()[:5] == ["active", "blue", "tag", "1.0.0", "ready"]
    assert preview.split()[:5] == ["preview", "green", "tag", "1.1.0", "NOT"]
    # The background work runs the live colour's release.
    assert worker.split()[:6] == ["worker", "tag", "1.0.0", "follows", "blue", "ready"]
    assert exporter.split()[:5] == [
        "backup-exporter",
        "tag",
        "1.0.0",
        "follows",
        "blue",
    ]
    # After a promote Helm's activeColor is stale; the Services are the truth.
    _live_on_green(cluster)
    proc = cluster.run("status")
    assert proc.stdout.splitlines()[0].split()[:2] == ["active", "green"]
    # A worker the switch did not move shows.
    assert proc.stdout.splitlines()[2].split()[:5] == [
        "worker",
        "tag",
        "1.0.0",
        "NOT",
        "green's",
    ]
    assert (
        "Helm's values say activeColor=blue; the Services select green" in proc.stdout
    )


def _sets(upgrade: list[str]) -> list[str]:
    return [upgrade[i + 1] for i, a in enumerate(upgrade) if a.startswith("--set")]


def test_stage_pins_the_active_colour_and_the_command_renders(
    cluster: FakeCluster,
) -> None:
    cluster.values["colors"] = {}
    proc = cluster.run("stage", "--tag", "1.1.0", "--contract")
    assert proc.returncode == 0, proc.stderr
    assert "rollback to blue (1.0.0) is refused" in proc.stdout
    (upgrade,) = cluster.upgrades()
    assert upgrade[2] == str(CHART)
    assert _sets(upgrade) == [
        "activeColor=blue",
        "image.tag=1.1.0",
        "colors.blue.tag=1.0.0",
        "colors.blue.contract=false",
        "colors.green.enabled=true",
        "colors.green.tag=1.1.0",
        "colors.green.contract=true",
        "worker.tag=1.0.0",
        "backup.exporter.tag=1.0.0",
    ]
    assert "the worker and backup exporter stay on 1.0.0 (blue's release)" in (
        proc.stdout
    )
    assert "until promote moves them to 1.1.0; rollback moves them back" in proc.stdout
    # The same --set flags on top of the release's values render what stage promises.
    args = ["template", "ballast", str(CHART), "--set", "image.tag=1.0.0"]
    args += ["--set", "backup.enabled=true", "--set", "s3.endpointUrl=http://s3:9000"]
    args += ["--set", "networkPolicy.enabled=false"]  # no s3Peers to name here
    for i, a in enumerate(upgrade):
        if a.startswith("--set"):
            args += [a, upgrade[i + 1]]
    objs = [d for d in yaml.safe_load_all(helm(*args, "--is-upgrade").stdout) if d]
    deployments = {d["metadata"]["name"]: d for d in find(objs, "Deployment")}
    images = {
        name: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for name, d in deployments.items()
    }
    assert images["ballast-api-blue"].endswith(":1.0.0")
    assert images["ballast-api-green"].endswith(":1.1.0")
    # The staged release takes no job before promotion: background work stays live's.
    assert images["ballast-worker"].endswith("-jobs:1.0.0")
    assert images["ballast-backup-exporter"].endswith("-backup:1.0.0")
    for cronjob in find(objs, "CronJob"):
        pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"].endswith("-backup:1.1.0")
    notes = deployments["ballast-api-green"]["metadata"].get("annotations") or {}
    assert notes.get("ballast.io/contract-migration") == "true"
    assert find(objs, "Job")[0]["spec"]["template"]["spec"]["containers"][0][
        "image"
    ].endswith(":1.1.0")
    svc = next(
        s for s in find(objs, "Service") if s["metadata"]["name"] == "ballast-ui"
    )
    assert svc["spec"]["selector"]["ballast.io/color"] == "blue"


def test_stage_after_a_promote_keeps_traffic_where_the_services_point(
    cluster: FakeCluster,
) -> None:
    _live_on_green(cluster)  # Helm's values still say activeColor: blue
    proc = cluster.run("stage", "--tag", "1.2.0")
    assert proc.returncode == 0, proc.stderr
    (upgrade,) = cluster.upgrades()
    assert _sets(upgrade)[:3] == [
        "activeColor=green",
        "image.tag=1.2.0",
        "colors.green.tag=1.1.0",
    ]
    assert "colors.blue.tag=1.2.0" in _sets(upgrade)
    # promote moved the workers to green's 1.1.0: the upgrade keeps them there.
    assert "worker.tag=1.1.0" in _sets(upgrade)
    assert "backup.exporter.tag=1.1.0" in _sets(upgrade)


def test_retire_keeps_the_old_colour_for_the_delay(cluster: FakeCluster) -> None:
    _live_on_green(cluster)
    ten_minutes_ago = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    cluster.objects[("service", "ballast-ui")]["metadata"]["annotations"] = {
        "ballast.io/switched-at": ten_minutes_ago
    }
    proc = cluster.run("retire", "--after", "30m")
    assert proc.returncode == 1
    assert "refusing to retire blue: traffic moved to green at" in proc.stderr
    assert cluster.upgrades() == []
    proc = cluster.run("retire", "--after", "5m")
    assert proc.returncode == 0, proc.stderr
    (upgrade,) = cluster.upgrades()
    assert _sets(upgrade) == [
        "activeColor=green",
        "colors.blue.enabled=false",
        "worker.tag=1.1.0",
        "backup.exporter.tag=1.1.0",
    ]
    proc = cluster.run("retire", "--after", "soon")
    assert proc.returncode == 1
    assert "not a duration" in proc.stderr


def test_the_readme_names_every_value_stage_and_retire_set(
    cluster: FakeCluster,
) -> None:
    """The runbook's table shows the command each step runs: no --set of the script is missing."""
    rows = {
        line.split("|")[1].strip(): line
        for line in (CHART / "README.md").read_text().splitlines()
        if line.startswith("| ") and "deploy.py" in line
    }
    _live_on_green(cluster)
    assert cluster.run("stage", "--tag", "1.2.0").returncode == 0
    assert cluster.run("retire", "--after", "0").returncode == 0
    stage, retire = cluster.upgrades()
    for row, upgrade in (
        ("stage release N+1", stage),
        ("retire the old colour", retire),
    ):
        for key in (s.split("=", 1)[0] for s in _sets(upgrade)):
            generic = key.replace("green", "<live>").replace("blue", "<idle>")
            assert generic in rows[row] or key in rows[row], (row, key)
    for row in ("promote", "roll back"):
        assert "worker and" in rows[row]


def test_the_followers_are_the_charts_deployments_and_containers() -> None:
    """deploy.py's worker and exporter names match the chart's, so promote finds them, and
    every container promote moves is one the chart renders with the pinned tag."""
    deploy = _deploy_module()
    objs = render(
        (),
        {
            "backup.enabled": "true",
            "s3.endpointUrl": "http://s3:9000",
            "networkPolicy.enabled": "false",
            "worker.tag": "7.0.0",
            "backup.exporter.tag": "7.0.0",
        },
    )
    keys = {key for _, _, key in deploy.FOLLOWERS}
    assert keys == {"worker.tag", "backup.exporter.tag"}
    for suffix, main, _ in deploy.FOLLOWERS:
        (d,) = find(objs, "Deployment", f"rel-ballast-{suffix}")
        pod = d["spec"]["template"]["spec"]
        containers = [*pod.get("initContainers", []), *pod["containers"]]
        assert main in [c["name"] for c in containers]
        for c in containers:
            assert deploy.split_image(c["image"])[1] == "7.0.0", (suffix, c["name"])


@pytest.mark.parametrize(
    ("image", "split"),
    [
        (
            "ghcr.io/example/ballast-jobs:1.2.0",
            ("ghcr.io/example/ballast-jobs", "1.2.0"),
        ),
        ("registry:5000/ballast-jobs:1.2.0", ("registry:5000/ballast-jobs", "1.2.0")),
        ("registry:5000/ballast-jobs", ("registry:5000/ballast-jobs", "")),
        (f"ballast-jobs@sha256:{'a' * 64}", ("ballast-jobs", "")),
        (f"ballast-jobs:1.2.0@sha256:{'a' * 64}", ("ballast-jobs", "1.2.0")),
    ],
)
def test_split_image_keeps_the_repository(image: str, split: tuple[str, str]) -> None:
    assert _deploy_module().split_image(image) == split


def test_the_contract_mark_renders_only_on_its_colour() -> None:
    objs = render(
        (),
        {
            "colors.green.enabled": "true",
            "colors.green.contract": "true",
        },
    )
    for d in find(objs, "Deployment"):
        name = d["metadata"]["name"]
        if not name.endswith(("-blue", "-green")):
            continue
        notes = d["metadata"].get("annotations") or {}
        marked = notes.get("ballast.io/contract-migration") == "true"
        assert marked == name.endswith("-green"), name
        # A mark on the Deployment, not the pod template: setting it restarts nothing.
        pod_notes = d["spec"]["template"]["metadata"].get("annotations") or {}
        assert "ballast.io/contract-migration" not in pod_notes


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


def test_helm_waits_longer_than_the_migration_may_take() -> None:
    """Every documented `helm upgrade --wait` (and the script's) outlasts the migration
    hook's deadline plus a rollout, so helm never gives up on a migration still running.
    """
    deadline = yaml.safe_load((CHART / "values.yaml").read_text())["migrations"][
        "activeDeadlineSeconds"
    ]
    assert _seconds(_deploy_module().HELM_TIMEOUT) >= deadline + 300
    readme = (CHART / "README.md").read_text()
    waits = [
        line
        for line in readme.splitlines()
        if "helm upgrade" in line and "--wait" in line
    ]
    assert waits
    for line in waits:
        assert "--timeout" in line, line
        timeout = line.split("--timeout", 1)[1].split()[0]
        assert _seconds(timeout) >= deadline + 300, line


# -- rollout.mode argo: Argo Rollouts switches; deploy.py refuses and says what to run ------


@pytest.mark.parametrize(
    ("command", "instead"),
    [
        ("promote", "use kubectl argo rollouts promote ballast-app -n apps"),
        (
            "rollback",
            "use kubectl argo rollouts undo ballast-app -n apps, then promote (before ",
        ),
        ("status", "use kubectl argo rollouts get rollout ballast-app -n apps"),
        ("stage", "helm upgrade --reuse-values --set-string image.tag=<tag>"),
        ("retire", "rollout.argo.scaleDownDelaySeconds after the promotion"),
    ],
)
def test_argo_mode_is_refused_with_the_command_to_use(
    cluster: FakeCluster, command: str, instead: str
) -> None:
    cluster.values["rollout"] = {"mode": "argo"}
    args = [command, "--tag", "1.2.0"] if command == "stage" else [command]
    proc = cluster.run(*args)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "runs rollout.mode argo, where Argo Rollouts switches traffic" in line
    assert instead in line
    # Nothing was scaled, smoke-tested, patched or upgraded.
    changed = {"scale", "patch", "port-forward", "rollout"}
    assert not [c for c in cluster.log() if c[0] == "kubectl" and c[1] in changed]
    assert [c[:2] for c in cluster.helm_calls()] == [["get", "values"]]


def _chart_smoke(backend: Backend, password: str) -> subprocess.CompletedProcess[str]:
    """charts/ballast/files/smoke_test.py as the analysis Job runs it (`python -c`)."""
    base = f"http://127.0.0.1:{backend.port}"
    return subprocess.run(
        [
            sys.executable,
            "-c",
            (CHART / "files" / "smoke_test.py").read_text(),
            base,
            base,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"BALLAST_SMOKE_USERNAME": SMOKE_USER, "BALLAST_SMOKE_PASSWORD": password},
    )


def test_the_analysis_smoke_test_makes_the_requests_promote_makes(
    cluster: FakeCluster, backend: Backend
) -> None:
    """rollout.mode argo's Job runs the file promote imports: same requests, same order."""
    assert cluster.run("promote").returncode == 0
    by_promote = [c[1:] for c in cluster.log() if c[0] == "http"]
    cluster.calls.unlink()
    proc = _chart_smoke(backend, SMOKE_PASSWORD)
    assert proc.returncode == 0, proc.stderr
    assert "smoke test passed" in proc.stdout
    by_job = [c[1:] for c in cluster.log() if c[0] == "http"]
    assert by_job == by_promote
    assert by_job[-1] == ["GET", "/_stcore/health"]


def test_the_analysis_smoke_test_fails_the_job(backend: Backend) -> None:
    proc = _chart_smoke(backend, "wrong")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: smoke test failed: login as smoke answered HTTP 401, not 201"
    )
    backend.readyz = 503
    proc = _chart_smoke(backend, SMOKE_PASSWORD)
    assert proc.returncode == 1
    assert "GET /readyz answered HTTP 503, not 200" in proc.stderr
