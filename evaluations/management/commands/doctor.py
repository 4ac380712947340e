"""`manage.py doctor`: the checks of /readyz for a person, one line each with what to do about a
failure, then a sandbox really started with this host's engine (`--skip-sandbox` on a host that runs
no worker). Exits non-zero when one fails."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from evaluations.monitoring import health
from evaluations.runs.engines import engine_from_settings
from sandbox.doctor import diagnose

LOCAL_SANDBOX_HINT = (
    'this host cannot run sandboxes: see README, "The sandbox" (`python -m sandbox doctor`); '
    "on a host without workers, pass --skip-sandbox"
)


class Command(BaseCommand):
    help = (
        "Check what Crucible needs (database, Redis, workers, the sandbox runtime as workers found it), "
        "then start a sandbox on this host; exit 1 when something fails."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--skip-sandbox", action="store_true", help="do not start a sandbox here (a host that runs no worker)"
        )

    def handle(self, *args, **options) -> None:
        failed = []
        for result in health.readiness_checks():
            detail = f"{result.detail} ({result.duration_ms:.0f} ms)"
            self._line(result.ok, result.name, detail, health.hint_for(result.name))
            if not result.ok:
                failed.append(result.name)
        if not options["skip_sandbox"]:
            for finding in diagnose(engine_from_settings()):
                name = f"local_{finding.name}"
                self._line(finding.ok, name, finding.text, LOCAL_SANDBOX_HINT)
                if not finding.ok:
                    failed.append(name)
        if failed:
            raise CommandError(f"not ready: {', '.join(failed)} failed (see above)")
        self.stdout.write("ready")

    def _line(self, ok: bool, name: str, detail: str, hint: str) -> None:
        self.stdout.write(f"{'OK  ' if ok else 'FAIL'}  {name:20} {detail}{'' if ok else f'  -> {hint}'}")
