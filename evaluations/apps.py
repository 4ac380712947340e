from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "evaluations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from evaluations import checks  # noqa: F401 - registers the system checks
        from evaluations.audit import connect_signals

        connect_signals()  # logins, failed logins and logouts go to the audit log
        from evaluations.realtime import connect_access_signals

        connect_access_signals()  # password changes and deleted users close open websockets
