"""Django system checks. The sandbox check really starts a sandbox, so it runs only on request:
`manage.py check --deploy --tag sandbox` (and `manage.py doctor` prints the same findings)."""

from __future__ import annotations

from django.core import checks


@checks.register("sandbox", deploy=True)
def sandbox_works(app_configs=None, **kwargs):
    from evaluations.runs.engines import engine_from_settings
    from sandbox.doctor import diagnose

    return [
        checks.Error(f"sandbox {f.name}: {f.text}", id=f"crucible.E{i:03d}")
        for i, f in enumerate(diagnose(engine_from_settings()), start=1)
        if not f.ok
    ]
