"""`Client(url, token)`: the REST API (/api/v1/) with typed results, and `follow()` for live runs.

Reads and submissions are retried while the server cannot be reached or answers 503: submissions
and re-runs carry an Idempotency-Key, so a retry never makes a second run.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from crucible import errors, live
from crucible.models import STATUSES, STREAMS, Batch, Event, LogChunk, MetricSample, Run, RunSummary

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
# Left out when a directory is packed: caches and version control, never part of a program.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRY_WAIT = 10.0


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("crucible-client")
    except Exception:  # noqa: BLE001 - a source checkout without metadata still works
        return "0"


class Client:
    """A Crucible server's API, as one user (their API token from /profile/).

    Raises the subclasses of `crucible.errors.CrucibleError`: `Unauthorized`, `NotFound`,
    `InvalidRequest`, `RateLimited`, `Conflict`, `Gone`, `Unavailable`, `ConnectionFailed`.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url or not token:
            raise errors.ConfigError("a Crucible URL and an API token are needed")
        if not url.startswith(("http://", "https://")):
            raise errors.ConfigError(f"the Crucible URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.retries = retries
        self._token = token
        self.user_agent = f"crucible-client/{_version()}"
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {token}", "User-Agent": self.user_agent},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_config(cls, **kwargs: Any) -> Client:
        """From CRUCIBLE_URL / CRUCIBLE_TOKEN, else what `crucible login` stored."""
        from crucible import config

        found = config.load()
        return cls(found.url, found.token, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"  # never the token

    # -- runs --------------------------------------------------------------------------------------

    def submit(
        self,
        *,
        code: str | None = None,
        path: str | Path | None = None,
        entrypoint: str | None = None,
        argv: Sequence[str] = (),
        stdin: str | None = None,
        wall_seconds: float | None = None,
        memory_mb: int | None = None,
        name: str | None = None,
        wait: bool = False,
        callback_url: str | None = None,
        preload: bool = False,
    ) -> Run:
        """Submit code (`code` as text, or `path`: a .py file, a project archive or a directory,
        which is packed as a .tar.gz) and return its first run, queued. `wait`: at the
        concurrent-run quota, queue the run behind the user's others instead of a 429.
        `callback_url`: the server POSTs the run there, signed, when it ends (else the profile's).
        `preload`: the program may start in a python3 that has imported common modules already."""
        if (code is None) == (path is None):
            raise errors.InvalidRequest(0, "give either code or path")
        if path is not None:
            code, archive = _source_of(Path(path), entrypoint)
            name = name or Path(path).name
        else:
            archive = None
        options: dict[str, Any] = {
            "name": name or None,
            "wall_seconds": wall_seconds,
            "memory_mb": memory_mb,
            "entrypoint": entrypoint if archive is not None else None,
            "argv": list(argv) or None,
            "stdin": stdin or None,
            "wait": True if wait else None,
            "preload": True if preload else None,
            "callback_url": callback_url,
        }
        body = {key: value for key, value in options.items() if value is not None}
        if archive is None:
            return Run.from_json(self._post("/api/v1/submissions/", json={"code": code, **body}, idempotent=True))
        fields = {key: _form_value(value) for key, value in body.items()}
        files = {"file": (*archive, "application/octet-stream")}
        return Run.from_json(self._post("/api/v1/submissions/", data=fields, files=files, idempotent=True))

    def run(self, run_id: int) -> Run:
        return Run.from_json(self._get_json(f"/api/v1/runs/{int(run_id)}/"))

    def runs(self, *, status: str | Sequence[str] | None = None, page_size: int = 50) -> Iterator[RunSummary]:
        """Every run the user may see, newest first, page by page (lazily). `status` filters here:
        the API lists every status."""
        wanted = {status} if isinstance(status, str) else set(status or ())
        unknown = wanted - set(STATUSES)
        if unknown:
            raise errors.InvalidRequest(0, f"unknown status {sorted(unknown)}; one of {', '.join(STATUSES)}")
        params: dict[str, Any] | None = {"page_size": page_size}
        url: str | None = "/api/v1/runs/"
        while url:
            page = self._get_json(url, params=params)
            for item in page["results"]:
                if not wanted or item["status"] in wanted:
                    yield RunSummary.from_json(item)
            url, params = _local(page.get("next")), None  # `next` carries the cursor and page size

    def cancel(self, run_id: int) -> Run:
        return Run.from_json(self._post(f"/api/v1/runs/{int(run_id)}/cancel/", idempotent=False))

    def rerun(self, run_id: int, *, wall_seconds: float | None = None, memory_mb: int | None = None) -> Run:
        """A new run of `run_id`'s submission (its limits, unless given)."""
        submission_id = self.run(run_id).submission.id
        body: dict[str, Any] = {}
        if wall_seconds is not None:
            body["wall_seconds"] = wall_seconds
        if memory_mb is not None:
            body["memory_mb"] = memory_mb
        return Run.from_json(self._post(f"/api/v1/submissions/{submission_id}/runs/", json=body, idempotent=True))

    def logs(
        self, run_id: int, *, stream: str = "stdout", offset: int = 0, limit: int | None = None, download: bool = False
    ) -> LogChunk:
        """Stored bytes of one stream from `offset` (all of them up to `limit`)."""
        if stream not in STREAMS:
            raise errors.InvalidRequest(0, f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
        params: dict[str, Any] = {"stream": stream, "offset": offset}
        if limit is not None:
            params["limit"] = limit
        if download:
            params["download"] = "true"
        resp = self._request("GET", f"/api/v1/runs/{int(run_id)}/logs/", params=params)
        disposition = resp.headers.get("Content-Disposition", "")
        filename = disposition.split('filename="', 1)[1].rstrip('"') if 'filename="' in disposition else None
        return LogChunk(
            stream=stream,
            offset=int(resp.headers.get("X-Crucible-Offset", offset)),
            data=resp.content,
            next_offset=int(resp.headers.get("X-Crucible-Next-Offset", offset + len(resp.content))),
            size=int(resp.headers.get("X-Crucible-Size", 0)),
            complete=resp.headers.get("X-Crucible-Complete") == "true",
            filename=filename,
        )

    def metrics(self, run_id: int) -> list[MetricSample]:
        data = self._get_json(f"/api/v1/runs/{int(run_id)}/metrics/")
        return [MetricSample.from_json(s) for s in data["samples"]]

    def follow(
        self, run_id: int, *, offsets: Mapping[str, int] | None = None, reconnect_for: float = 60.0
    ) -> Iterator[Event]:
        """Live events of a run over the websocket until its terminal `Status` (the last event):
        `Output` (each byte once, in order), `Status`, `Metrics`, and `Reconnecting` when the
        connection dropped and is being restored from the offsets received (for up to
        `reconnect_for` seconds without a connection before `ConnectionFailed`)."""
        return live.follow(self, int(run_id), offsets=offsets, reconnect_for=reconnect_for)

    # -- batches -------------------------------------------------------------------------------------

    def submit_batch(
        self,
        *,
        code: str | None = None,
        path: str | Path | None = None,
        entrypoint: str | None = None,
        argv: Sequence[str] = (),
        stdin: str | None = None,
        inputs: Sequence[Mapping[str, Any]] | None = None,
        inputs_file: str | Path | None = None,
        configs: Sequence[Mapping[str, Any]] | None = None,
        configs_file: str | Path | None = None,
        name: str | None = None,
        callback_url: str | None = None,
    ) -> Batch:
        """One program (as for `submit`) run once per input × configuration. Inputs are objects with
        `label`, `stdin` or `stdin_file`, `argv`; configurations `label`, `wall_seconds`, `memory_mb`;
        either may come from a .csv (a header row naming the keys) or .json file instead."""
        if (code is None) == (path is None):
            raise errors.InvalidRequest(0, "give either code or path")
        if inputs is not None and inputs_file is not None or configs is not None and configs_file is not None:
            raise errors.InvalidRequest(0, "give inputs (or configs) as a list or as a file, not both")
        fields: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes, str]] = {}
        if name:
            fields["name"] = name
        if callback_url is not None:
            fields["callback_url"] = callback_url
        if path is not None:
            code, archive = _source_of(Path(path), entrypoint)
            fields.setdefault("name", Path(path).name)
            if archive is not None:
                files["file"] = (*archive, "application/octet-stream")
                if entrypoint:
                    fields["entrypoint"] = entrypoint
        if code is not None:
            fields["code"] = code
        if stdin:
            fields["stdin"] = stdin
        for key, upload in (("inputs_file", inputs_file), ("configs_file", configs_file)):
            if upload is not None:
                upload = Path(upload)
                try:
                    files[key] = (upload.name, upload.read_bytes(), "application/octet-stream")
                except OSError as exc:
                    raise errors.InvalidRequest(0, f"cannot read {upload}: {exc.strerror}") from None
        if not files:  # JSON keeps the types of numbers and argument lists as they are
            body = {**fields, **({"argv": list(argv)} if argv else {})}
            if inputs is not None:
                body["inputs"] = [dict(item) for item in inputs]
            if configs is not None:
                body["configs"] = [dict(item) for item in configs]
            return Batch.from_json(self._post("/api/v1/batches/", json=body, idempotent=True))
        if argv:
            fields["argv"] = _shell_join(argv)
        if inputs is not None:
            fields["inputs"] = json.dumps([dict(item) for item in inputs])
        if configs is not None:
            fields["configs"] = json.dumps([dict(item) for item in configs])
        return Batch.from_json(self._post("/api/v1/batches/", data=fields, files=files, idempotent=True))

    def batch(self, batch_id: int) -> Batch:
        return Batch.from_json(self._get_json(f"/api/v1/batches/{int(batch_id)}/"))

    def batches(self) -> list[Batch]:
        """The user's newest batches (without their runs)."""
        return [Batch.from_json(b) for b in self._get_json("/api/v1/batches/")["results"]]

    def cancel_batch(self, batch_id: int) -> Batch:
        return Batch.from_json(self._post(f"/api/v1/batches/{int(batch_id)}/cancel/", idempotent=False))

    def rerun_failed(self, batch_id: int) -> Batch:
        """A new batch of the runs of `batch_id` that failed or ended in error."""
        return Batch.from_json(self._post(f"/api/v1/batches/{int(batch_id)}/rerun-failed/", idempotent=True))

    def batch_results(self, batch_id: int, *, format: str = "json") -> Any:
        """One row per run (run id, input, config, status, reason, exit code, run seconds, peak
        memory, output size): a list of dicts, or with format="csv" the CSV bytes."""
        if format not in ("json", "csv"):
            raise errors.InvalidRequest(0, f"format must be json or csv, got {format!r}")
        batch = self.batch(batch_id)  # its results' URLs, as the server names them
        url = _local(batch.results_json_url if format == "json" else batch.results_csv_url) or ""
        return self._get_json(url) if format == "json" else self._request("GET", url).content

    def wait(self, run_id: int, *, poll: float = 1.0, timeout: float | None = None) -> Run:
        """Poll until the run is terminal; the run then (with its output)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run.is_terminal:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {run.status} after {timeout:g} s")
            time.sleep(poll)

    # -- live: what crucible.live needs --------------------------------------------------------------

    def websocket_url(self, run_id: int, offsets: Mapping[str, int]) -> str:
        base = "wss://" + self.url[len("https://") :] if self.url.startswith("https://") else "ws://" + self.url[7:]
        query = "&".join(f"{s}={int(offsets.get(s, 0))}" for s in STREAMS)
        return f"{base}/ws/runs/{run_id}/?{query}"

    def websocket_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._token}"}

    # -- HTTP ----------------------------------------------------------------------------------------

    def _get_json(self, url: str, **kwargs: Any) -> Any:
        return _json(self._request("GET", url, **kwargs))

    def _post(self, path: str, *, idempotent: bool, **kwargs: Any) -> Any:
        headers = {"Idempotency-Key": str(uuid.uuid4())} if idempotent else {}
        return _json(self._request("POST", path, headers=headers, retry_sent=idempotent, **kwargs))

    def _request(self, method: str, url: str, *, retry_sent: bool = True, **kwargs: Any) -> httpx.Response:
        """One call, retried (with backoff, or the server's Retry-After) while the server cannot be
        reached or is unavailable. A request that may have reached the server is retried only when
        repeating it is harmless (`retry_sent`: a GET, or a POST with an Idempotency-Key)."""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                resp = self._http.request(method, url, **kwargs)
            except httpx.ConnectError as exc:  # nothing was sent: always safe to repeat
                if last:
                    raise errors.ConnectionFailed(f"cannot reach {self.url}: {exc}") from None
                time.sleep(_backoff(attempt))
                continue
            except httpx.TransportError as exc:
                if last or not retry_sent:
                    raise errors.ConnectionFailed(f"lost the connection to {self.url}: {exc}") from None
                time.sleep(_backoff(attempt))
                continue
            if resp.status_code in RETRY_STATUSES and not last and (retry_sent or resp.status_code == 503):
                time.sleep(min(_retry_after(resp) or _backoff(attempt), MAX_RETRY_WAIT))
                continue
            # A read over the rate limit waits its turn when that is soon (a quota's 429 on a
            # submission names a wait until midnight and is the caller's to handle).
            wait = _retry_after(resp) if resp.status_code == 429 and method == "GET" else None
            if wait is not None and wait <= MAX_RETRY_WAIT and not last:
                time.sleep(wait)
                continue
            if resp.status_code >= 400:
                raise _error_for(resp)
            if resp.status_code >= 300:  # httpx follows no redirects: a POST must not turn into a GET
                location = resp.headers.get("Location", "?")
                raise errors.ApiError(
                    resp.status_code,
                    f"{method} {resp.request.url} was redirected to {location}: is {self.url} the server's own "
                    "address (https:// where it redirects there)?",
                )
            return resp
        raise AssertionError("unreachable")


def _local(url: str | None) -> str | None:
    """The path and query of a URL the server gave: asked of the configured server, so the token
    never goes to a host a misconfigured proxy put in an absolute URL."""
    if not url:
        return None
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        kind = resp.headers.get("Content-Type", "no content type")
        raise errors.ApiError(
            resp.status_code,
            f"{resp.request.method} {resp.request.url} answered {kind}, not JSON: is this a Crucible server's URL?",
        ) from None


def _backoff(attempt: int) -> float:
    return min(0.5 * 2**attempt, MAX_RETRY_WAIT)


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


_ERRORS: dict[int, type[errors.ApiError]] = {
    400: errors.InvalidRequest,
    401: errors.Unauthorized,
    403: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.Gone,
    413: errors.InvalidRequest,
    415: errors.InvalidRequest,
    422: errors.InvalidRequest,
    429: errors.RateLimited,
}


def _error_for(resp: httpx.Response) -> errors.ApiError:
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    kind = _ERRORS.get(resp.status_code, errors.Unavailable if resp.status_code >= 500 else errors.ApiError)
    return kind(resp.status_code, _message(resp.status_code, body), body, _retry_after(resp))


def _message(status_code: int, body: Any) -> str:
    """The server's own words: `detail`, or each field's messages (a 400 names the field)."""
    if isinstance(body, dict):
        if set(body) == {"detail"} or (status_code != 400 and "detail" in body):
            return str(body["detail"])
        parts = []
        for key, value in body.items():
            text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(text if key in ("detail", "non_field_errors") else f"{key}: {text}")
        if parts:
            return "; ".join(parts)
    return f"the server answered HTTP {status_code}"


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.InvalidRequest(0, f"{path} is not UTF-8 text (invalid byte at offset {exc.start})") from None


def _shell_join(argv: Sequence[str]) -> str:
    import shlex

    return shlex.join(argv)  # the server splits it like a POSIX shell: the same list comes back


def _source_of(path: Path, entrypoint: str | None) -> tuple[str | None, tuple[str, bytes] | None]:
    """What to send for `path`: a .py file's text, or else the (name, bytes) of a project to upload."""
    if path.is_file() and path.name.endswith(".py"):
        if entrypoint:
            raise errors.InvalidRequest(0, "--entry is for a directory or a project archive, not a .py file")
        return _read_text(path), None
    return None, _archive_of(path, entrypoint or "main.py")


def _form_value(value: Any) -> str:
    """A JSON field as multipart/form-data carries it (the server splits `argv` like a shell)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return _shell_join(value)
    return str(value)


def _archive_of(path: Path, entrypoint: str) -> tuple[str, bytes]:
    """(name, bytes) of what to upload for `path`: an archive as it is, a directory packed."""
    if path.is_file():
        if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise errors.InvalidRequest(
                0, f"{path} is neither a .py file nor a project archive ({', '.join(ARCHIVE_SUFFIXES)}) nor a directory"
            )
        return path.name, path.read_bytes()
    if not path.is_dir():
        raise errors.InvalidRequest(0, f"{path}: no such file or directory")
    if not (path / entrypoint).is_file():
        raise errors.InvalidRequest(0, f"{entrypoint} is not in {path}: name the program's main file with --entry")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in sorted(path.rglob("*")):
            relative = item.relative_to(path)
            if SKIPPED_DIRS.intersection(relative.parts) or item.suffix == ".pyc":
                continue
            if item.is_symlink() or not (item.is_file() or item.is_dir()):
                continue  # a project is its own files: links could point anywhere on this machine
            info = tar.gettarinfo(str(item), arcname=relative.as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if item.is_file():
                with open(item, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return f"{path.resolve().name or 'project'}.tar.gz", buffer.getvalue()
