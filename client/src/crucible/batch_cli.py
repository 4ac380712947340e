"""`crucible batch ...`: submit one program over many inputs and configurations, follow its
progress, read its results, cancel it, re-run its failed runs (client/README.md)."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

from crucible import errors, exitcodes
from crucible.arguments import object_id
from crucible.client import Client
from crucible.display import STATUS_COLOURS, Display, human_seconds
from crucible.models import Batch

POLL_SECONDS = 1.0
PLAIN_PROGRESS_SECONDS = 10.0  # off a terminal, a progress line at most this often


def add_parser(sub: Any, json_flag: argparse.ArgumentParser) -> None:
    batch = sub.add_parser("batch", help="one program over many inputs and configurations")
    cmds = batch.add_subparsers(dest="batch_command", metavar="BATCH_COMMAND", required=True)

    p = cmds.add_parser("submit", parents=[json_flag], help="submit a batch; prints its id")
    p.add_argument("path", metavar="FILE|DIR", help="a .py file, a project archive or a directory")
    p.add_argument("--entry", help="the main file of a directory or archive (default: main.py)")
    p.add_argument("--arg", action="append", default=[], help="an argument every run gets first (repeatable)")
    p.add_argument("--stdin", type=Path, metavar="FILE", help="standard input for inputs that give none")
    p.add_argument("--inputs", type=Path, metavar="FILE", help="a .csv or .json file of inputs")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="ARGS",
        help="one input's arguments, shell-quoted (repeatable)",
    )
    p.add_argument(
        "--input-stdin",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="one input's stdin (repeatable)",
    )
    p.add_argument("--configs", type=Path, metavar="FILE", help="a .csv or .json file of configurations")
    p.add_argument("--wall", type=float, action="append", default=[], metavar="S", help="wall limit (repeatable)")
    p.add_argument("--memory", type=int, action="append", default=[], metavar="MB", help="memory limit (repeatable)")
    p.add_argument("--name")
    p.add_argument("--callback", metavar="URL", help="the server POSTs each run here, signed, when it ends")
    p.add_argument("--follow", "-f", action="store_true", help="show progress until every run ended")
    p.set_defaults(handler=cmd_batch_submit)

    p = cmds.add_parser("follow", parents=[json_flag], help="show a batch's progress until every run ended")
    p.add_argument("batch_id", type=object_id("batches"), metavar="BATCH")
    p.set_defaults(handler=cmd_batch_follow)

    p = cmds.add_parser("show", parents=[json_flag], help="a batch's counts by status and reason, and run times")
    p.add_argument("batch_id", type=object_id("batches"), metavar="BATCH")
    p.set_defaults(handler=cmd_batch_show)

    p = cmds.add_parser("results", help="one row per run, as CSV (default) or JSON")
    p.add_argument("batch_id", type=object_id("batches"), metavar="BATCH")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write here instead of standard output")
    p.set_defaults(handler=cmd_batch_results)

    p = cmds.add_parser("cancel", parents=[json_flag], help="cancel a batch's queued and running runs")
    p.add_argument("batch_id", type=object_id("batches"), metavar="BATCH")
    p.set_defaults(handler=cmd_batch_cancel)

    p = cmds.add_parser("rerun-failed", parents=[json_flag], help="a new batch of the runs that did not succeed")
    p.add_argument("batch_id", type=object_id("batches"), metavar="BATCH")
    p.add_argument("--follow", "-f", action="store_true")
    p.set_defaults(handler=cmd_batch_rerun_failed)

    p = cmds.add_parser("list", parents=[json_flag], help="your newest batches")
    p.set_defaults(handler=cmd_batch_list)


def _text(path: Path, what: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise errors.InvalidRequest(0, f"{what}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise errors.InvalidRequest(0, f"{what}: {path} is not UTF-8 text (byte {exc.start})") from None


def cmd_batch_submit(args: argparse.Namespace, display: Display) -> int:
    inputs: list[dict[str, Any]] | None = None
    if args.input or args.input_stdin:
        if args.inputs is not None:
            raise errors.InvalidRequest(0, "give inputs with --inputs FILE or with --input/--input-stdin, not both")
        inputs = [{"argv": line, "label": line} for line in args.input]
        inputs += [{"stdin": _text(path, "--input-stdin"), "label": path.name} for path in args.input_stdin]
    configs: list[dict[str, Any]] | None = None
    if args.wall or args.memory:
        if args.configs is not None:
            raise errors.InvalidRequest(0, "give configurations with --configs FILE or with --wall/--memory, not both")
        # Every wall limit with every memory limit.
        configs = []
        for wall, memory in itertools.product(args.wall or [None], args.memory or [None]):
            config: dict[str, Any] = {}
            if wall is not None:
                config["wall_seconds"] = wall
            if memory is not None:
                config["memory_mb"] = memory
            configs.append(config)
    with Client.from_config() as client:
        batch = client.submit_batch(
            path=args.path,
            entrypoint=args.entry,
            argv=args.arg,
            stdin=_text(args.stdin, "--stdin") if args.stdin is not None else None,
            inputs=inputs,
            inputs_file=args.inputs,
            configs=configs,
            configs_file=args.configs,
            name=args.name,
            callback_url=args.callback,
        )
        return _started(client, display, batch, args)


def cmd_batch_rerun_failed(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        return _started(client, display, client.rerun_failed(args.batch_id), args)


def cmd_batch_follow(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        return follow_batch(client, display, args.batch_id, as_json=args.json)


def cmd_batch_show(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        batch = client.batch(args.batch_id)
    if args.json:
        _print_json(batch.raw)
    else:
        print(_report(batch))
    return exitcodes.OK


def cmd_batch_results(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        rows = client.batch_results(args.batch_id, format=args.format)
    data = rows if isinstance(rows, bytes) else (_dumps(rows) + "\n").encode()
    if args.output is not None:
        args.output.write_bytes(data)
        display.message(f"wrote the results of batch {args.batch_id} to {args.output}")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return exitcodes.OK


def cmd_batch_cancel(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        batch = client.cancel_batch(args.batch_id)
    if args.json:
        _print_json(batch.raw)
    else:
        display.message(f"batch {batch.id} is being cancelled: its queued runs now, its running ones within a second")
    return exitcodes.OK


def cmd_batch_list(args: argparse.Namespace, display: Display) -> int:
    with Client.from_config() as client:
        batches = client.batches()
    if args.json:
        _print_json([b.raw for b in batches])
        return exitcodes.OK
    for batch in batches:
        created = batch.created.strftime("%Y-%m-%d %H:%M") if batch.created else "-"
        print(f"{batch.id:>6}  {created}  {'done' if batch.done else 'busy'}  {_counts(batch)}  {batch.name}")
    if not batches:
        display.message("no batches")
    return exitcodes.OK


def _started(client: Client, display: Display, batch: Batch, args: argparse.Namespace) -> int:
    if args.follow:
        display.message(f"batch {batch.id}: {batch.total} runs queued: {batch.url}")
        return follow_batch(client, display, batch.id, as_json=args.json)
    if args.json:
        _print_json(batch.raw)
    else:
        print(batch.id)
        display.message(
            f"batch {batch.id}: {batch.total} runs queued: {batch.url} (`crucible batch follow {batch.id}`)"
        )
    return exitcodes.OK


def follow_batch(client: Client, display: Display, batch_id: int, *, as_json: bool) -> int:
    """Poll a batch until no run of it is queued or running; 0 when every run succeeded."""
    started = time.monotonic()
    batch = client.batch(batch_id)
    display.start_status(lambda: f"batch {batch_id} · {_counts(batch)} · {human_seconds(time.monotonic() - started)}")
    last_line, last_counts = 0.0, None
    try:
        while not batch.done:
            if (
                not display.live
                and batch.counts != last_counts
                and time.monotonic() - last_line > PLAIN_PROGRESS_SECONDS
            ):
                display.message(f"batch {batch_id}: {_counts(batch)}")
                last_line, last_counts = time.monotonic(), batch.counts
            time.sleep(POLL_SECONDS)
            batch = client.batch(batch_id)
    except KeyboardInterrupt:
        display.stop_status()
        display.message(f"stopped following; batch {batch_id} goes on (`crucible batch cancel {batch_id}`)")
        return exitcodes.INTERRUPTED
    finally:
        display.stop_status()
    if as_json:
        _print_json(batch.raw)
    code = exitcodes.OK if batch.all_succeeded else exitcodes.BATCH_NOT_ALL_SUCCEEDED
    display.message(_report(batch), STATUS_COLOURS["succeeded" if code == exitcodes.OK else "failed"])
    return code


def _counts(batch: Batch) -> str:
    shown = [f"{n} {status}" for status, n in batch.counts.items() if n]
    return f"{batch.total - batch.counts.get('queued', 0) - batch.counts.get('running', 0)}/{batch.total} ended" + (
        f" ({', '.join(shown)})" if shown else ""
    )


def _report(batch: Batch) -> str:
    reasons = ", ".join(f"{reason} {n}" for reason, n in batch.reasons.items())
    times = (
        f"; run time median {human_seconds(batch.median_run_seconds)}, p95 {human_seconds(batch.p95_run_seconds)}"
        if batch.median_run_seconds is not None
        else ""
    )
    return (
        f"batch {batch.id} {'done' if batch.done else 'busy'}: {_counts(batch)}"
        + (f"; reasons: {reasons}" if reasons else "")
        + times
    )


def _dumps(data: Any) -> str:
    import json

    return json.dumps(data, separators=(",", ":"), default=str)


def _print_json(data: Any) -> None:
    sys.stdout.write(_dumps(data) + "\n")
    sys.stdout.flush()
