"""The README's metric table names every metric /metrics can answer with."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from evaluations.monitoring import metrics

README = Path(__file__).resolve().parents[3] / "README.md"


def _metric_names() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names.add(value._name + ("_total" if value._type == "counter" else ""))
        elif isinstance(value, tuple) and value and str(value[0]).startswith("crucible_"):
            names.add(value[0])
    return names


def test_every_metric_is_in_the_readme() -> None:
    names = _metric_names()
    readme = README.read_text()

    assert len(names) >= 12
    assert [name for name in sorted(names) if f"| `{name}" not in readme] == []
