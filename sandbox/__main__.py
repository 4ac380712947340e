"""Command line: `python -m sandbox run file.py`, `build-image`, `doctor`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from sandbox.contract import ExecRequest, Limits, Stream
from sandbox.engine import EngineConfig, get_engine
from sandbox.errors import SandboxError
from sandbox.images import build_image, default_recipes, host_suite

DEFAULT_VAR = Path(__file__).resolve().parent.parent / "var"


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument("--images-dir", type=Path, default=DEFAULT_VAR / "images")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_VAR / "sandboxes")
    parser.add_argument("--engine", default="runsc")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a Python file in a sandbox")
    run.add_argument("file", type=Path)
    run.add_argument("args", nargs="*")
    run.add_argument("--wall", type=float, default=Limits.wall_seconds)
    run.add_argument("--memory", type=parse_size, default=Limits.memory_bytes)
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    sub.add_parser("build-image", help="build (or reuse) the sandbox root filesystem")
    sub.add_parser("doctor", help="check that sandboxes really run here")
    args = parser.parse_args(argv)
    config = EngineConfig(images_dir=args.images_dir, state_dir=args.state_dir)

    try:
        if args.command == "build-image":
            for recipe in {r.key: r for r in default_recipes(host_suite()).values()}.values():
                image = build_image(args.images_dir, recipe, log=lambda m: print(m, file=sys.stderr))
                print(f"{image.name} {image.digest} {image.rootfs}")
            return 0
        engine = get_engine(args.engine, config)
        if args.command == "doctor":
            return doctor(engine)
        limits = Limits(
            wall_seconds=args.wall, memory_bytes=args.memory, tmp_bytes=min(Limits.tmp_bytes, args.memory // 2)
        )
        request = ExecRequest(files={"main.py": args.file.read_bytes()}, argv=tuple(args.args), limits=limits)
        engine.check()

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


def doctor(engine) -> int:
    from sandbox import cgroups

    ok = True

    def line(name: str, good: bool, text: str) -> None:
        nonlocal ok
        ok = ok and good
        print(f"{'ok ' if good else 'FAIL'} {name:10} {text}")

    try:
        engine.check()
        line("runsc", True, f"{engine.runtime_version()} platform={engine.platform()}")
        line("cgroups", True, cgroups.layout())
        started = time.monotonic()
        result = engine.execute(ExecRequest(files={"main.py": b"print(1)"}))
        took = time.monotonic() - started
        good = result.status.value == "succeeded" and result.stdout.data == b"1\n"
        line(
            "run",
            good,
            f"print(1) -> {result.status.value} in {took * 1000:.0f} ms "
            f"(boot {1000 * (result.timings.boot_seconds or 0):.0f} ms) {result.detail}",
        )
    except SandboxError as exc:
        line("engine", False, str(exc))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
