"""`manage.py doctor`: really start a sandbox with the configured engine and report."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from evaluations.runs.engines import engine_from_settings
from sandbox.doctor import diagnose


class Command(BaseCommand):
    help = "Check that the configured sandbox engine can run code on this machine."

    def handle(self, *args, **options) -> None:
        findings = diagnose(engine_from_settings())
        for f in findings:
            self.stdout.write(f"{'ok  ' if f.ok else 'FAIL'} {f.name:8} {f.text}")
        if not all(f.ok for f in findings):
            raise CommandError("the sandbox is not usable here (see above)")
