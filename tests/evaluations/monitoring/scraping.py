"""Reading a /metrics answer in tests: every sample by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, frozenset of (label, value)): value} for every sample in `text`."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def total(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 if there are none)."""
    want = set(labels.items())
    return sum(value for (sample, have), value in found.items() if sample == name and want <= have)
