"""The `crucible` command: submit, follow, read, cancel, re-run and list runs (client/README.md).

Standard output carries what a script wants (a run id, the program's output, `--json`); standard
error carries what a person wants (messages, and on a terminal the live status line).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crucible import batch_cli, config, errors, exitcodes
from crucible.arguments import object_id
from crucible.client import Client, _version
from crucible.display import BOLD, RED, STATUS_COLOURS, Clock, Display, human_bytes, human_seconds
from crucible.models import STATUSES, STREAMS, Metrics, MetricSample, Output, Reconnecting, Run, Status

FOLLOW_RECONNECT_SECONDS = 60.0
LIST_SCAN_LIMIT = 2000


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` is the program's (argparse would have ended the positionals before it).
    program_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(program_args) - (1 if "--" in argv else 0)])
    display = Display()
    if args.command is None:
        parser.print_help(sys.stderr)
        return exitcodes.USAGE
    if program_args:
        if args.command != "run":
            parser.error("arguments after `--` are for `crucible run`")
        args.args = [*args.args, *program_args]
    try:
        return args.handler(args, display)
    except errors.CrucibleError as exc:
        display.error(str(exc))
        return exitcodes.for_error(exc)
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED
    except BrokenPipeError:  # `crucible logs 7 | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return exitcodes.OK


def build_parser() -> argparse.ArgumentParser:
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON on standard output (see client/README.md)")

    parser = argparse.ArgumentParser(
        prog="crucible",
        description="Run code on a Crucible server and follow it live. Configure with `crucible login URL`, "
        "or CRUCIBLE_URL and CRUCIBLE_TOKEN.",
    )
    parser.add_argument("--version", action="version", version=f"crucible-client {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("login", help="store the server's URL and your API token (mode 0600)")
    p.add_argument("url", help="the server, e.g. https://crucible.example.org")
    p.set_defaults(handler=cmd_login)

    p = sub.add_parser("run", parents=[json_flag], help="submit a .py file, a project archive or a directory")
    p.add_argument("path", metavar="FILE|DIR", help="a .py file, a .zip/.tar.gz/.tar project, or a directory")
    p.add_argument("args", nargs="*", metavar="-- ARG", help="the program's arguments, after `--`")
    p.add_argument("--entry", help="the main file of a directory or archive (default: main.py)")
    p.add_argument("--arg", action="append", default=[], dest="arg", help="one program argument (repeatable)")
    p.add_argument("--stdin", type=Path, metavar="FILE", help="a UTF-8 text file for the program's standard input")
    p.add_argument("--wall", type=float, metavar="S", help="wall-time limit in seconds")
    p.add_argument("--memory", type=int, metavar="MB", help="memory limit in MiB")
    p.add_argument("--name", help="the submission's name (default: the file's)")
    p.add_argument("--follow", "-f", action="store_true", help="stream the output live; exit with the run's code")
    p.add_argument(
        "--queue", action="store_true", help="at your concurrent-run quota, wait in your queue instead of exit 5"
    )
    p.add_argument("--callback", metavar="URL", help="the server POSTs the run here, signed, when it ends")
    p.add_argument(
        "--preload", action="store_true", help="start in a Python that has imported common modules already (faster)"
    )
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("follow", parents=[json_flag], help="stream a run's output live; exit with its code")
    p.add_argument("run_id", type=object_id("runs"), metavar="RUN")
    p.set_defaults(handler=cmd_follow)

    p = sub.add_parser("logs", help="print a run's stored output")
    p.add_argument("run_id", type=object_id("runs"), metavar="RUN")
    p.add_argument("--stream", choices=STREAMS, default="stdout")
    p.add_argument("--download", action="store_true", help="save it to a file (run-<id>-<stream>.log) instead")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="with --download: the file to write")
    p.set_defaults(handler=cmd_logs)

    p = sub.add_parser("cancel", parents=[json_flag], help="stop a queued or running run")
    p.add_argument("run_id", type=object_id("runs"), metavar="RUN")
    p.set_defaults(handler=cmd_cancel)

    p = sub.add_parser("rerun", parents=[json_flag], help="run a run's code again (its limits unless given)")
    p.add_argument("run_id", type=object_id("runs"), metavar="RUN")
    p.add_argument("--wall", type=float, metavar="S")
    p.add_argument("--memory", type=int, metavar="MB")
    p.add_argument("--follow", "-f", action="store_true")
    p.set_defaults(handler=cmd_rerun)

    p = sub.add_parser("list", parents=[json_flag], help="your runs, newest first")
    p.add_argument("--status", action="append", choices=STATUSES, help="only runs with this status (repeatable)")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (default 20)")
    p.set_defaults(handler=cmd_list)

    batch_cli.add_parser(sub, json_flag)
    return parser


# -- commands ------------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace, display: Display) -> int:
    url = args.url.rstrip("/")
    if sys.stdin.isatty():
        token = getpass.getpass(f"API token (make one on {url}/profile/): ")
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise errors.ConfigError("no token given: paste the key shown when you made it on /profile/")
    with Client(url, token, retries=1) as client:
        next(iter(client.runs(page_size=1)), None)  # a 401 here means the token is wrong: store nothing
    path = config.save(url, token)
    display.message(f"token accepted by {url}; stored in {path} (readable by you only)")
    return exitcodes.OK


def cmd_run(args: argparse.Namespace, display: Display) -> int:
    stdin = None
    if args.stdin is not None:
        try:
            stdin = args.stdin.read_bytes().decode("utf-8")
        except OSError as exc:
            raise errors.InvalidRequest(0, f"--stdin: cannot read {args.stdin}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise errors.InvalidRequest(0, f"--stdin: {args.stdin} is not UTF-8 text (byte {exc.start})") from None
    with Client.from_config() as client:
        run = client.submit(
            path=args.path,
            entrypoint=args.entry,
            argv=[*args.arg, *args.args],
            stdin=stdin,
            wall_seconds=args.wall,
            memory_mb=args.memory,
            name=args.name,
            wait=args.queue,
            callback_url=args.callback,
            preload=args.preload,
        )
        return _started(client, display, run, args)


def cmd_rerun(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        run = client.rerun(args.run_id, wall_seconds=args.wall, memory_mb=args.memory)
        return _started(client, display, run, args)


def cmd_follow(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        return follow_run(client, display, args.run_id, as_json=args.json)


def cmd_logs(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        chunk = client.logs(args.run_id, stream=args.stream, download=args.download)
    if args.download:
        path = args.output or Path(chunk.filename or f"run-{args.run_id}-{args.stream}.log")
        path.write_bytes(chunk.data)
        display.message(f"wrote {len(chunk.data)} bytes of run {args.run_id}'s {args.stream} to {path}")
    else:
        sys.stdout.buffer.write(chunk.data)
        sys.stdout.buffer.flush()
    if not chunk.complete:
        display.message(f"run {args.run_id} has not ended: this is its output so far (`crucible follow {args.run_id}`)")
    return exitcodes.OK


def cmd_cancel(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        run = client.cancel(args.run_id)
    if args.json:
        _print_json(run.raw)
    else:
        display.message(f"run {run.id} is being cancelled (it ends within a second)")
    return exitcodes.OK


def cmd_list(args: argparse.Namespace, display: Display) -> int:
    if args.limit < 1:
        raise errors.InvalidRequest(0, "--limit must be at least 1")
    wanted = set(args.status or ())
    runs, scanned = [], 0
    with Client.from_config() as client:
        # The API lists every status: filter here, reading at most LIST_SCAN_LIMIT runs.
        for run in client.runs(page_size=100 if wanted else min(args.limit, 100)):
            scanned += 1
            if not wanted or run.status in wanted:
                runs.append(run)
            if len(runs) >= args.limit or scanned >= LIST_SCAN_LIMIT:
                break
    if wanted and scanned >= LIST_SCAN_LIMIT and len(runs) < args.limit:
        display.message(f"looked at your newest {LIST_SCAN_LIMIT} runs only")
    if args.json:
        _print_json([run.raw for run in runs])
        return exitcodes.OK
    rows = [("RUN", "STATUS", "REASON", "EXIT", "QUEUED (UTC)", "RUN TIME", "PEAK MEM", "NAME")]
    for run in runs:
        queued = run.queued_at.strftime("%Y-%m-%d %H:%M:%S") if run.queued_at else "-"
        exit_code = "-" if run.exit_code is None else str(run.exit_code)
        rows.append(
            (
                str(run.id),
                run.status,
                run.reason or "-",
                exit_code,
                queued,
                human_seconds(run.run_seconds),
                human_bytes(run.usage.peak_memory_bytes),
                run.submission.name,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    colour = Display(err=sys.stdout).colour  # colours only when standard output is a terminal
    for n, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        if colour and n == 0:
            cells = [f"\033[{BOLD}m{c}\033[0m" for c in cells]
        elif colour:
            cells[1] = f"\033[{STATUS_COLOURS.get(row[1], '0')}m{cells[1]}\033[0m"
        print("  ".join(cells).rstrip())
    if not runs:
        display.message("no runs" + (f" with status {', '.join(args.status)}" if args.status else ""))
    return exitcodes.OK


# -- following -----------------------------------------------------------------------------------------


def _started(client: Client, display: Display, run: Run, args: argparse.Namespace) -> int:
    if args.follow:
        display.message(f"run {run.id} queued: {run.url}")
        return follow_run(client, display, run.id, as_json=args.json)
    if args.json:
        _print_json(run.raw)
    else:
        print(run.id)
        display.message(f"run {run.id} queued: {run.url} (`crucible follow {run.id}`)")
    return exitcodes.OK


def follow_run(client: Client, display: Display, run_id: int, *, as_json: bool) -> int:
    """Stream a run until it ends; its exit code (exitcodes.for_run)."""
    live = _LiveState()
    display.start_status(live.text)
    final: Status | None = None
    try:
        for event in client.follow(run_id, reconnect_for=FOLLOW_RECONNECT_SECONDS):
            if isinstance(event, Output):
                if as_json:
                    _print_json(
                        {
                            "type": "output",
                            "stream": event.stream,
                            "offset": event.offset,
                            "data": base64.b64encode(event.data).decode(),
                        }
                    )
                else:
                    display.write_output(event.stream, event.data)
            elif isinstance(event, Status):
                changed = live.status is None or live.status.status != event.status
                live.update(event)
                if as_json:
                    _print_json(event.raw)
                if event.is_terminal:
                    final = event
                elif changed and display.live:
                    display.refresh()
            elif isinstance(event, Metrics):
                if event.samples:
                    live.sample = event.samples[-1]
                if as_json:
                    _print_json({"type": "metrics", "samples": [dataclasses.asdict(s) for s in event.samples]})
            elif isinstance(event, Reconnecting):
                display.message(f"{event.error}; reconnecting in {event.delay:.1f}s (attempt {event.attempt})")
                if as_json:
                    _print_json({"type": "reconnecting", **dataclasses.asdict(event)})
    except KeyboardInterrupt:
        display.stop_status()
        display.message(
            f"stopped following; run {run_id} goes on (`crucible follow {run_id}`, `crucible cancel {run_id}`)"
        )
        return exitcodes.INTERRUPTED
    finally:
        display.stop_status()
    assert final is not None  # follow() ends only at a terminal status
    code = exitcodes.for_run(final.status, final.reason, final.exit_code)
    display.message(_summary(run_id, final, code), *_summary_colour(final))
    return code


class _LiveState:
    """What the status line shows: the latest status and metric sample, elapsed on the server's clock."""

    def __init__(self) -> None:
        self.status: Status | None = None
        self.sample: MetricSample | None = None
        self.clock = Clock()

    def update(self, status: Status) -> None:
        self.status = status
        since = status.started_at if status.status == "running" else status.queued_at
        if since is not None and status.server_time is not None:
            self.clock.set((status.server_time - since).total_seconds())

    def text(self) -> str:
        status = self.status
        if status is None:
            return "connecting…"
        elapsed = human_seconds(self.clock.elapsed())
        if status.status == "queued":
            parts = [f"queued {elapsed}"]
            if status.queue_position is not None:
                ahead = status.queue_position
                parts.append("next in line" if ahead == 0 else f"{ahead} run{'s' if ahead > 1 else ''} ahead")
            if status.waiting:
                parts.append(status.waiting)
            return " · ".join(parts)
        parts = [f"{status.status} {elapsed}"]
        if self.sample is not None:
            if self.sample.cpu_percent is not None:
                parts.append(f"CPU {self.sample.cpu_percent:.0f}%")
            if self.sample.memory_bytes is not None:
                parts.append(f"mem {human_bytes(self.sample.memory_bytes)}")
        return " · ".join(parts)


def _summary(run_id: int, status: Status, code: int) -> str:
    took = f" after {human_seconds(status.run_seconds)}" if status.run_seconds is not None else ""
    if status.status == "succeeded":
        return f"run {run_id} succeeded{took}"
    if status.reason in (None, "exit_code") and status.status == "failed":
        what = f"exit code {status.exit_code}" if status.exit_code is not None else "no exit code"
        return f"run {run_id} failed{took}: {what}"
    detail = f": {status.detail}" if status.detail else ""
    return f"run {run_id} {status.status} ({status.reason}){took}{detail} [exit {code}]"


def _summary_colour(status: Status) -> tuple[str, ...]:
    return (STATUS_COLOURS.get(status.status, RED),)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
