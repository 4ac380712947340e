"""Command line: `python -m sandbox run file.py|project.zip [--entry x.py] [-- argv]`, `build-image`, `doctor`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from sandbox.archive import archive_kind, unpack_archive
from sandbox.contract import ExecRequest, Limits, Stream
from sandbox.doctor import diagnose
from sandbox.engine import EngineConfig, ExecutionEngine, engine_names, get_engine
from sandbox.errors import InvalidRequest, SandboxError
from sandbox.images import build_image, default_recipes, host_suite

DEFAULT_VAR = Path(__file__).resolve().parent.parent / "var"


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument("--images-dir", type=Path, default=DEFAULT_VAR / "images")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_VAR / "sandboxes")
    parser.add_argument("--engine", default="runsc", help=f"one of: {', '.join(engine_names())}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a Python file or a .zip/.tar.gz project in a sandbox",
        description="Arguments after `--` are passed to the program.",
    )
    run.add_argument("file", type=Path, help="a .py file, or a .zip, .tar.gz, .tgz or .tar project")
    run.add_argument("args", nargs="*", help="the program's argv (put them after `--`)")
    run.add_argument("--entry", help="the project's entry point (default main.py; a .py file runs itself)")
    run.add_argument("--stdin-file", type=Path, help="a file to feed to the program's stdin ('-': this stdin)")
    # Also accepted after `run`; SUPPRESS keeps the top-level value when it is not given here.
    run.add_argument("--engine", default=argparse.SUPPRESS, help=f"one of: {', '.join(engine_names())}")
    run.add_argument("--wall", type=float, default=Limits.wall_seconds, help="wall-time limit in seconds")
    run.add_argument("--memory", type=parse_size, default=Limits.memory_bytes, help="memory limit, e.g. 256M")
    run.add_argument("--processes", type=int, default=Limits.processes, help="process (and thread) limit")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    sub.add_parser("build-image", help="build (or reuse) the sandbox root filesystem")
    sub.add_parser("doctor", help="check that sandboxes really run here")
    return parser


def request_from_args(args: argparse.Namespace) -> ExecRequest:
    """The ExecRequest for `run`: one .py file, or a project archive unpacked by the archive rules."""
    path: Path = args.file
    data = path.read_bytes()
    if archive_kind(path.name) is not None:
        files = unpack_archive(data, path.name)
        entry = args.entry or "main.py"
        if entry not in files:
            scripts = sorted(name for name in files if name.endswith(".py"))
            raise InvalidRequest(
                "entrypoint",
                f"{entry!r} is not in {path.name}; pick one with --entry: {', '.join(scripts) or '(no .py files)'}",
            )
    else:
        entry = args.entry or path.name
        if entry != path.name:
            raise InvalidRequest("entrypoint", "--entry only applies to a .zip/.tar.gz project")
        files = {entry: data}
    if args.stdin_file is None:
        stdin = b""
    elif str(args.stdin_file) == "-":
        stdin = sys.stdin.buffer.read()
    else:
        stdin = args.stdin_file.read_bytes()
    limits = Limits(
        wall_seconds=args.wall,
        memory_bytes=args.memory,
        tmp_bytes=min(Limits.tmp_bytes, args.memory // 2),
        processes=args.processes,
    )
    return ExecRequest(files=files, entrypoint=entry, argv=tuple(args.args), stdin=stdin, limits=limits)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after the first `--` is the program's argv (argparse would not take it after options).
    program_argv: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, program_argv = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    if args.command == "run":
        args.args = [*args.args, *program_argv]
    elif program_argv:
        build_parser().error("`--` and program arguments only apply to `run`")
    # Naming the subprocess engine on the command line is the explicit opt-in it requires.
    explicit_subprocess = args.engine == "subprocess"
    # One run per process here: a warm launcher for a next run would only be made to be discarded.
    config = EngineConfig(
        images_dir=args.images_dir,
        state_dir=args.state_dir,
        allow_subprocess=explicit_subprocess,
        warm_launchers=False,
    )

    try:
        if args.command == "build-image":
            for recipe in {r.key: r for r in default_recipes(host_suite()).values()}.values():
                image = build_image(args.images_dir, recipe, log=lambda m: print(m, file=sys.stderr))
                print(f"{image.name} {image.digest} {image.rootfs}")
            return 0
        engine = get_engine(args.engine, config)
        if args.command == "doctor":
            return doctor(engine)
        try:
            request = request_from_args(args)
        except OSError as exc:
            print(f"sandbox: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 2
        engine.check()
        if explicit_subprocess:
            print("sandbox: WARNING: the subprocess engine is not a sandbox (development only)", file=sys.stderr)

        def echo(stream: Stream, offset: int, chunk: bytes) -> None:
            out = sys.stdout if stream is Stream.STDOUT else sys.stderr
            out.buffer.write(chunk)
            out.flush()

        result = engine.execute(request, on_output=None if args.json else echo)
        if args.json:
            data = asdict(result)
            for s in ("stdout", "stderr"):
                data[s]["data"] = result.__getattribute__(s).data.decode("utf-8", "replace")
            print(json.dumps(data, indent=2, default=str))
        else:
            print(
                f"[{result.status.value}{'/' + result.reason.value if result.reason else ''}] "
                f"exit={result.exit_code} {result.detail}",
                file=sys.stderr,
            )
        return 0 if result.status.value == "succeeded" else 1
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2


def doctor(engine: ExecutionEngine) -> int:
    findings = diagnose(engine)
    for f in findings:
        print(f"{'ok  ' if f.ok else 'FAIL'} {f.name:8} {f.text}")
    return 0 if all(f.ok for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
