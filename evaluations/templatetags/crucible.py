"""Template filters for run pages: `{{ n|size }}` and `{{ run.reason|reason }}` (evaluations/runs/words.py)."""

from __future__ import annotations

from django import template

from evaluations.runs import words

register = template.Library()

register.filter("size", words.size_words)
register.filter("reason", words.reason_words)
register.filter("detail", words.detail_words)


@register.simple_tag
def peak_memory(run) -> str:
    return words.peak_memory_words(
        peak=run.peak_memory_bytes, limit=run.memory_bytes, reason=run.reason, engine=run.engine
    )
