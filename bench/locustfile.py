"""Locust workload for `bench/load.py`: what a Ballast ui session asks of the state API.

Each simulated user logs in once (on_start, as a demo editor or admin), then loops over:
list and read projects, save and read drafts, save and load its own form, track events,
with 0.5-1.5 s between tasks. Every user writes under its own form id, and a form save
sends the version of the last answer as `expected_version`, so a correct api answers
every request with 2xx: any other status is counted as a failure.

Run by `python -m bench.run load` (locust headless in its own process); by hand:
    locust -f bench/locustfile.py --headless -u 10 -r 5 -t 30s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

from ballast_common.seed import DEMO_PASSWORD_SUFFIX

# Demo users allowed to save forms (the viewer may not); users take turns.
WRITERS = ("editor", "admin")
_next_writer = itertools.count()


class BallastUser(FastHttpUser):
    wait_time = between(0.5, 1.5)
    network_timeout = 60.0
    connection_timeout = 60.0

    def on_start(self) -> None:
        self.username = WRITERS[next(_next_writer) % len(WRITERS)]
        self.tag = uuid.uuid4().hex[:12]
        self.form_id = f"load.{self.tag}"
        self.form_version = 0
        self.seq = 0
        self.project_ids: list[str] = []
        self.headers: dict[str, str] = {}
        self.login()

    # ---- helpers

    def login(self) -> None:
        with self.client.post(
            "/v1/sessions",
            json={
                "username": self.username,
                "password": f"{self.username}{DEMO_PASSWORD_SUFFIX}",
            },
            name="POST /v1/sessions",
            catch_response=True,
        ) as resp:
            if resp.status_code != 201:
                resp.failure(f"login: {resp.status_code} {resp.text[:200]}")
                return
            token = resp.json()["token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def _write_headers(self) -> dict[str, str]:
        return {**self.headers, "Idempotency-Key": uuid.uuid4().hex}

    def _json(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        """One request; a non-2xx answer is a failure (with its body in the report)."""
        kwargs.setdefault("headers", self.headers)
        with self.client.request(
            method, path, name=name, catch_response=True, **kwargs
        ) as resp:
            if not 200 <= (resp.status_code or 0) < 300:
                resp.failure(f"{resp.status_code} {(resp.text or '')[:200]}")
                return None
            return resp.json()

    # ---- tasks

    @task(3)
    def list_projects(self) -> None:
        page = self._json("GET", "/v1/projects?page=1&size=25", "GET /v1/projects")
        if page is not None:
            self.project_ids = [p["id"] for p in page["items"]]

    @task(2)
    def read_project(self) -> None:
        if not self.project_ids:
            self.list_projects()
            return
        pid = random.choice(self.project_ids)
        self._json("GET", f"/v1/projects/{pid}", "GET /v1/projects/{id}")

    @task(4)
    def save_drafts(self) -> None:
        self.seq += 1
        items = [
            {
                "form_id": self.form_id,
                "field": field,
                "value": {"text": f"{field} {self.seq}", "n": self.seq},
                "seq": self.seq,
            }
            for field in random.sample(["name", "notes", "budget", "tags"], 2)
        ]
        self._json(
            "PUT",
            "/v1/drafts",
            "PUT /v1/drafts",
            json={"items": items},
            headers=self._write_headers(),
        )

    @task(2)
    def read_drafts(self) -> None:
        self._json("GET", f"/v1/drafts?form_id={self.form_id}", "GET /v1/drafts")

    @task(2)
    def save_form(self) -> None:
        body = {
            "data": {"name": f"load {self.tag}", "n": self.seq, "tags": ["a", "b"]},
            "expected_version": self.form_version,
        }
        form = self._json(
            "PUT",
            f"/v1/forms/{self.form_id}",
            "PUT /v1/forms/{id}",
            json=body,
            headers=self._write_headers(),
        )
        if form is not None:
            self.form_version = int(form["version"])

    @task(1)
    def load_form(self) -> None:
        if not self.form_version:
            self.save_form()  # nothing saved yet: a read would be a 404
            return
        form = self._json("GET", f"/v1/forms/{self.form_id}", "GET /v1/forms/{id}")
        if form is not None:
            self.form_version = int(form["version"])

    @task(3)
    def track_events(self) -> None:
        events = [
            {
                "event": "load.click",
                "props": {"n": self.seq, "i": i},
                "session_id": self.tag,
            }
            for i in range(random.randint(1, 3))
        ]
        self._json("POST", "/v1/events", "POST /v1/events", json={"events": events})
