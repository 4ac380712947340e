"""Create the demo admin and researcher on a new database and print their logins once."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from evaluations.accounts import tokens


class Command(BaseCommand):
    help = "Create demo users (admin, researcher) if the database has no users yet."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--logins-file", help="also write the logins here (mode 0600) for later starts")

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if User.objects.exists():
            return
        admin_password = secrets.token_urlsafe(12)
        researcher_password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@example.invalid", admin_password)
        researcher = User.objects.create_user("researcher", "researcher@example.invalid", researcher_password)
        # Only its hash is stored: this output (or the logins file) is the one place the key is.
        _token, key = tokens.token_create(user=researcher, name="demo")
        text = (
            "Demo logins:\n"
            f"  admin       / {admin_password}\n"
            f"  researcher  / {researcher_password}\n"
            f"  researcher API token: {key}\n"
        )
        if options.get("logins_file"):
            # Created (or reset) as 0600 before the secrets go in, even if the file existed.
            fd = os.open(options["logins_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        else:
            self.stdout.write(text)
