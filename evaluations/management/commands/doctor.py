"""`manage.py doctor`: really start a sandbox with the configured engine and report."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from evaluations.execution import engine_from_settings
from sandbox.__main__ import doctor


class Command(BaseCommand):
    help = "Check that the configured sandbox engine can run code on this machine."

    def handle(self, *args, **options) -> None:
        if doctor(engine_from_settings()) != 0:
            raise CommandError("the sandbox is not usable here (see above)")
