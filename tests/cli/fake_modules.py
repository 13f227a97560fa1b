"""Tiny `python -m` packages standing in for services in the supervisor tests."""

from __future__ import annotations

from pathlib import Path

MODULES = {
    # Exits at once with code 3.
    "ballast_fake_crash": "import sys\nsys.exit(3)\n",
    # Exits at once with code 0 (a server that returns is still a dead component).
    "ballast_fake_done": "pass\n",
    # Dies from SIGKILL (negative return code).
    "ballast_fake_killed": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    # A small HTTP server on $FAKE_PORT: /healthz 200, /missing 404, anything else 500.
    "ballast_fake_http": """
import http.server
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = {"/healthz": 200, "/missing": 404}.get(self.path, 500)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(os.environ["FAKE_PORT"])), Handler).serve_forever()
""",
    # Sleeps; never answers anything.
    "ballast_fake_sleep": "import time\nwhile True:\n    time.sleep(1)\n",
    # Ignores SIGTERM (writes its pid to $FAKE_READY once it does).
    "ballast_fake_stubborn": """
import os
import pathlib
import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(os.environ["FAKE_READY"]).write_text(str(os.getpid()))
while True:
    time.sleep(1)
""",
    # Leaves a SIGTERM-ignoring grandchild in its process group ($FAKE_READY: its pid).
    "ballast_fake_spawner": """
import os
import pathlib
import subprocess
import sys
import time

code = "import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\ntime.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", code])
time.sleep(0.3)
pathlib.Path(os.environ["FAKE_READY"]).write_text(str(child.pid))
while True:
    time.sleep(1)
""",
}


def write_modules(root: Path) -> Path:
    for name, main in MODULES.items():
        pkg = root / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text("", encoding="utf-8")
        (pkg / "__main__.py").write_text(main, encoding="utf-8")
    return root
