"""Unit tests of sandbox.contract: what a valid request and valid limits are."""

from __future__ import annotations

import math

import pytest

from sandbox.contract import LIMIT_SPECS, ExecRequest, GiB, Limits, MiB, Reason, Status
from sandbox.errors import InvalidRequest, SandboxError

LIMIT_NAMES = sorted(LIMIT_SPECS)


def limits_with(name: str, value: object) -> Limits:
    """Limits with one field set, the others adjusted only as far as tmp < memory requires."""
    kwargs: dict[str, object] = {name: value}
    if name == "memory_bytes":
        kwargs["tmp_bytes"] = LIMIT_SPECS["tmp_bytes"].minimum
    if name == "tmp_bytes":
        kwargs["memory_bytes"] = LIMIT_SPECS["memory_bytes"].maximum
    return Limits(**kwargs)  # type: ignore[arg-type]


def assert_rejected(name: str, value: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        limits_with(name, value)
    assert info.value.field == name
    assert name in str(info.value)
    return info.value


# -- Limits ----------------------------------------------------------------------------------------


def test_default_limits_are_valid() -> None:
    limits = Limits()
    for name, spec in LIMIT_SPECS.items():
        assert getattr(limits, name) == spec.default
    assert limits.tmp_bytes < limits.memory_bytes


def test_every_limit_field_has_a_spec() -> None:
    assert set(Limits.__dataclass_fields__) == set(LIMIT_SPECS)


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_it_rejects_a_zero_limit(name: str) -> None:
    assert_rejected(name, 0)


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_it_rejects_a_negative_limit(name: str) -> None:
    assert_rejected(name, -1)
    assert_rejected(name, -LIMIT_SPECS[name].default)


@pytest.mark.parametrize("name", LIMIT_NAMES)
@pytest.mark.parametrize("value", ["10", None, b"1", [1], object()], ids=["str", "None", "bytes", "list", "object"])
def test_it_rejects_a_non_numeric_limit(name: str, value: object) -> None:
    error = assert_rejected(name, value)
    assert "number" in error.message


@pytest.mark.parametrize("name", LIMIT_NAMES)
@pytest.mark.parametrize("value", [True, False])
def test_it_rejects_a_bool_limit(name: str, value: bool) -> None:
    error = assert_rejected(name, value)
    assert "number" in error.message


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_it_rejects_a_limit_above_its_maximum(name: str) -> None:
    spec = LIMIT_SPECS[name]
    assert_rejected(name, spec.maximum + 1)
    assert_rejected(name, spec.maximum * 2)


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_it_rejects_a_limit_below_its_minimum(name: str) -> None:
    spec = LIMIT_SPECS[name]
    assert_rejected(name, spec.minimum / 2)


@pytest.mark.parametrize("name", LIMIT_NAMES)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_it_rejects_non_finite_limits(name: str, value: float) -> None:
    assert_rejected(name, value)


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_it_accepts_each_limit_at_its_minimum_and_maximum(name: str) -> None:
    spec = LIMIT_SPECS[name]
    assert getattr(limits_with(name, spec.minimum), name) == spec.minimum
    assert getattr(limits_with(name, spec.maximum), name) == spec.maximum


INTEGER_LIMITS = [name for name in LIMIT_NAMES if name not in ("wall_seconds", "cpu_cores")]


@pytest.mark.parametrize("name", INTEGER_LIMITS)
def test_it_rejects_a_fractional_value_for_an_integer_limit(name: str) -> None:
    spec = LIMIT_SPECS[name]
    assert_rejected(name, float(spec.minimum) + 0.5)


def test_it_rejects_tmp_as_large_as_memory() -> None:
    with pytest.raises(InvalidRequest) as info:
        Limits(memory_bytes=128 * MiB, tmp_bytes=128 * MiB)
    assert info.value.field == "tmp_bytes"


def test_it_rejects_tmp_larger_than_memory() -> None:
    with pytest.raises(InvalidRequest) as info:
        Limits(memory_bytes=64 * MiB, tmp_bytes=1 * GiB)
    assert info.value.field == "tmp_bytes"


def test_it_accepts_tmp_just_below_memory() -> None:
    assert Limits(memory_bytes=128 * MiB, tmp_bytes=128 * MiB - 1).tmp_bytes == 128 * MiB - 1


def test_invalid_request_is_a_value_error_and_a_sandbox_error() -> None:
    with pytest.raises(ValueError):
        Limits(wall_seconds=0)
    with pytest.raises(SandboxError):
        Limits(wall_seconds=0)


def test_limits_are_immutable() -> None:
    limits = Limits()
    with pytest.raises(AttributeError):
        limits.wall_seconds = 1000  # type: ignore[misc]


# -- ExecRequest -----------------------------------------------------------------------------------


def test_a_default_request_is_valid() -> None:
    request = ExecRequest(files={"main.py": b"print(1)"})
    assert request.entrypoint == "main.py"
    assert request.argv == ()
    assert request.stdin == b""
    assert dict(request.env) == {}
    assert request.image == "python3"
    assert request.limits == Limits()


def test_it_rejects_a_request_without_files() -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={})
    assert info.value.field == "files"


@pytest.mark.parametrize("name", ["/main.py", "/etc/passwd", "//main.py"])
def test_it_rejects_absolute_file_paths(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={name: b"", "main.py": b""})
    assert info.value.field == "files"


@pytest.mark.parametrize("name", ["..", "../main.py", "a/../../main.py", "a/..", "lib/../../x.py"])
def test_it_rejects_dot_dot_in_file_paths(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={name: b"", "main.py": b""})
    assert info.value.field == "files"


@pytest.mark.parametrize("name", ["", ".", "./main.py", "a//b.py", "a/", "a\\b.py", "a\0b.py"])
def test_it_rejects_other_unsafe_file_names(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={name: b"", "main.py": b""})
    assert info.value.field == "files"


@pytest.mark.parametrize("name", ["d" * 256 + ".py", "é" * 128 + "/main.py", "caf\udce9.py"])
def test_it_rejects_names_no_file_system_takes(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={name: b"", "main.py": b""})
    assert info.value.field == "files"
    info.value.message.encode("utf-8")  # the message names it, escaped


def test_it_accepts_nested_relative_paths() -> None:
    request = ExecRequest(files={"main.py": b"", "pkg/__init__.py": b"", "pkg/sub/mod.py": b""})
    assert set(request.files) == {"main.py", "pkg/__init__.py", "pkg/sub/mod.py"}


def test_it_rejects_a_missing_entrypoint() -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={"lib.py": b""})
    assert info.value.field == "entrypoint"
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={"main.py": b""}, entrypoint="other.py")
    assert info.value.field == "entrypoint"


def test_it_rejects_non_bytes_file_content() -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={"main.py": "print(1)"})  # type: ignore[dict-item]
    assert info.value.field == "files"


@pytest.mark.parametrize(
    "env",
    [{"A\0B": "x"}, {"A": "x\0y"}, {"": "x"}, {"A=B": "x"}],
    ids=["nul-in-name", "nul-in-value", "empty-name", "equals-in-name"],
)
def test_it_rejects_invalid_environment_variables(env: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={"main.py": b""}, env=env)
    assert info.value.field == "env"


def test_it_rejects_an_argument_with_a_nul() -> None:
    with pytest.raises(InvalidRequest) as info:
        ExecRequest(files={"main.py": b""}, argv=("ok", "a\0b"))
    assert info.value.field == "argv"


def test_a_request_does_not_alias_the_callers_mutable_inputs() -> None:
    files = {"main.py": b"print(1)"}
    env = {"A": "1"}
    argv = ["x"]
    request = ExecRequest(files=files, env=env, argv=argv)  # type: ignore[arg-type]
    files["evil.py"] = b""
    env["B"] = "2"
    argv.append("y")
    assert set(request.files) == {"main.py"}
    assert dict(request.env) == {"A": "1"}
    assert request.argv == ("x",)
    with pytest.raises(TypeError):
        request.files["x.py"] = b""  # type: ignore[index]


def test_statuses_know_which_are_terminal() -> None:
    assert not Status.QUEUED.is_terminal
    assert not Status.RUNNING.is_terminal
    for s in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ERROR):
        assert s.is_terminal
    assert Reason("output_limit") is Reason.OUTPUT_LIMIT


def test_the_package_exports_the_size_units() -> None:
    import sandbox

    assert (sandbox.KiB, sandbox.MiB, sandbox.GiB) == (1024, 1024**2, 1024**3)
    assert sandbox.MiB is MiB
