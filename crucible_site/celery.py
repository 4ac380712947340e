"""The Celery application; configuration comes from Django settings (CELERY_*)."""

import os
import warnings

from celery import Celery
from celery.exceptions import SecurityWarning
from celery.signals import celeryd_init

from crucible_site.private_files import make_private

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crucible_site.settings")
# Workers run as root on purpose (runsc and its cgroups need it) and accept only JSON messages, so
# Celery's advice against root is moot; printed raw before logging is set up, it broke JSON logs.
warnings.filterwarnings("ignore", message="You're running the worker with superuser", category=SecurityWarning)

app = Celery("crucible")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["evaluations.runs", "evaluations.webhooks"])


@celeryd_init.connect
def keep_files_private(**kwargs) -> None:
    # Before the worker imports its modules (metrics files) or writes work dirs and the database.
    from django.conf import settings

    database = settings.DATABASES["default"]
    sqlite = database["ENGINE"] == "django.db.backends.sqlite3"
    make_private(sqlite_database=str(database["NAME"]) if sqlite else None)
