"""Hypothesis settings and strategies for the property-based tests on serializers and forms: any
input gets a 4xx or a valid result, never a 500 or an exception."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Short runs (a few seconds a test), nothing written to the repository (no example database).
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Form values and query strings: any text a browser can send (no lone surrogates: those are no UTF-8).
form_text = st.text(max_size=30) | st.sampled_from(["", " ", "0", "-1", "1e400", "nan", "true", "10" * 20])

# JSON text may escape a lone surrogate ("\udce9"), which decodes to no UTF-8 text.
# (A list of characters: text() would fold the odd ones into its alphabet and draw them rarely.)
odd_chars = st.sampled_from(["\udce9", "\ud800", "\x00", "\u202e", "é"])
json_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30) | st.lists(
    odd_chars | st.characters(max_codepoint=127), max_size=8
).map("".join)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
# Strings and lists of strings on their own too: most fields take those, and they are rare as leaves.
json_values = (
    json_text
    | st.lists(json_text, max_size=3)
    | st.recursive(
        json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
        max_leaves=6,
    )
)


def fields_of(known: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict]:
    """Dicts holding any of the known fields (each a likely value or anything at all), sometimes
    with a field of another name."""
    return st.fixed_dictionaries(
        {}, optional={name: strategy | json_values for name, strategy in known.items()}
    ) | st.dictionaries(json_text, json_values, max_size=3)


def form_fields_of(names: list[str]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional={name: form_text for name in names})
