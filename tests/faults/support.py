"""What the fault tests use to talk to Crucible as a user does: the REST API (every 5xx it answers
is kept, for the final check) and a websocket that follows one run (docs/live-runs.md)."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "error"})


def program(body: str) -> str:
    """Python source for a run: `body` after a comment that no other run's code has (see marker)."""
    return f"# run {uuid.uuid4().hex}\n{body}"


def marker(code: str) -> str:
    """The first line of a `program`: found in the sandbox's work dir while it runs."""
    return code.splitlines()[0]


class Api:
    """The REST API with one user's token. Responses of 500 and above are collected in
    `server_errors`; while `outage` is set, 503s go to `outage_answers` instead (expected then)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.session.hooks["response"].append(self._record)
        self.server_errors: list[str] = []
        self.outage = False
        self.outage_answers: list[requests.Response] = []

    def _record(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        if resp.status_code == 503 and self.outage:
            self.outage_answers.append(resp)
        elif resp.status_code >= 500:
            self.server_errors.append(f"{resp.request.method} {resp.url} -> {resp.status_code}: {resp.text[:300]}")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base_url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def submit_request(self, code: str, *, wall: float = 5) -> requests.Response:
        body = {"name": "fault", "code": code, "wall_seconds": wall, "memory_mb": 128}
        return self.post("/api/v1/submissions/", json=body)

    def submit(self, code: str, *, wall: float = 5) -> int:
        resp = self.submit_request(code, wall=wall)
        assert resp.status_code == 201, f"submission answered {resp.status_code}: {resp.text[:500]}"
        return resp.json()["id"]

    def run(self, run_id: int) -> dict[str, Any]:
        resp = self.get(f"/api/v1/runs/{run_id}/")
        assert resp.status_code == 200, f"GET run {run_id}: {resp.status_code} {resp.text[:500]}"
        return resp.json()

    def wait(self, run_id: int, until=lambda run: run["status"] in TERMINAL, *, timeout: float = 60, what="") -> dict:
        """Poll the run until `until(run)`; fail with the last state seen after `timeout` seconds.
        Connection errors (the web restarting) and 503s (its database) are waited out too."""
        deadline = time.monotonic() + timeout
        last: Any = "no answer"
        while time.monotonic() < deadline:
            try:
                resp = self.get(f"/api/v1/runs/{run_id}/")
            except requests.ConnectionError as exc:
                last = exc
            else:
                if resp.status_code == 503:
                    last = f"503 {resp.text[:200]}"
                    time.sleep(0.2)
                    continue
                assert resp.status_code == 200, f"GET run {run_id}: {resp.status_code} {resp.text[:500]}"
                last = resp.json()
                if until(last):
                    return last
            time.sleep(0.2)
        raise AssertionError(f"run {run_id}: {what or 'not terminal'} after {timeout:g}s; last seen: {last}")

    def wait_output(self, run_id: int, text: str, *, timeout: float = 30) -> dict:
        return self.wait(run_id, lambda run: text in run["stdout"], timeout=timeout, what=f"no {text!r} in stdout")


@dataclass
class RunFollower:
    """Follows one run over `/ws/runs/<id>/` in a thread, as a client that keeps every byte would:
    each output message must start where the bytes so far end (no gap, no duplicate); when the
    server closes the socket it connects again with its offsets. Never reconnects on its own: a
    socket that stays open and silent is a socket that stopped following."""

    ws_url: str  # ws://host:port
    token: str
    run_id: int
    timeout: float = 60
    output: dict[str, bytearray] = field(default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()})
    statuses: list[str] = field(default_factory=list)
    final: dict | None = None
    connections: int = 0
    closes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)  # handshakes answered 5xx (503 aside)

    def start(self) -> RunFollower:
        self._thread = threading.Thread(target=self._follow, name=f"follow-run-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _follow(self) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        deadline = time.monotonic() + self.timeout
        while self.final is None and time.monotonic() < deadline:
            query = f"stdout={len(self.output['stdout'])}&stderr={len(self.output['stderr'])}"
            try:
                with connect(
                    f"{self.ws_url}/ws/runs/{self.run_id}/?{query}",
                    additional_headers={"Authorization": f"Token {self.token}"},
                    open_timeout=5,
                    close_timeout=1,
                ) as ws:
                    self.connections += 1
                    while self.final is None:
                        self._take(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
                    return
            except ConnectionClosed as exc:
                self.closes.append(f"closed: {exc}")
                if exc.rcvd is not None and 4400 <= exc.rcvd.code < 4500:
                    self.problems.append(f"refused with {exc.rcvd.code}")
                    return
            except InvalidStatus as exc:
                status = exc.response.status_code
                self.closes.append(f"handshake answered {status}")
                if status >= 500 and status != 503:  # 503: unavailable for now, try again (it does)
                    self.server_errors.append(f"websocket handshake for run {self.run_id} -> {status}")
            except (OSError, InvalidHandshake) as exc:
                self.closes.append(f"could not connect: {exc!r}")
            except TimeoutError:
                self.problems.append(f"the socket stayed open and silent until {self.timeout:g}s had passed")
                return
            time.sleep(0.3)

    def _take(self, msg: dict) -> None:
        if msg.get("type") == "output":
            buf = self.output[msg["stream"]]
            if msg["offset"] != len(buf):
                self.problems.append(f"{msg['stream']} chunk at offset {msg['offset']} after {len(buf)} bytes")
                if msg["offset"] > len(buf):
                    return
            data = base64.b64decode(msg["data"])
            buf.extend(data[len(buf) - msg["offset"] :])
        elif msg.get("type") == "status":
            self.statuses.append(msg["status"])
            if msg["status"] in TERMINAL:
                self.final = msg
