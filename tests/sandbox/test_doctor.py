"""The self-check behind `python -m sandbox doctor`: what it reports of each engine, and where it stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import cgroups
from sandbox.doctor import diagnose
from sandbox.engine import EngineConfig, ExecutionEngine, Finding, get_engine
from sandbox.subprocess_engine import SubprocessEngine

pytestmark = pytest.mark.timeout(60)


def test_for_runsc_it_reports_the_runtime_its_platform_the_cgroups_and_a_real_run(
    runsc_engine: ExecutionEngine,
) -> None:
    findings = diagnose(runsc_engine)
    assert [(f.name, f.ok) for f in findings] == [("engine", True), ("cgroups", True), ("run", True)], findings
    engine, cgroup_layout, run = findings
    assert engine.text == f"runsc {runsc_engine.runtime_version()} platform={runsc_engine.platform()}"
    assert cgroup_layout.text == cgroups.layout()
    assert run.text.startswith("print(1) -> succeeded in ")


def test_for_docker_it_checks_the_cgroups_it_makes_too(docker_engine: ExecutionEngine) -> None:
    findings = diagnose(docker_engine, run=False)
    assert [(f.name, f.ok, f.text) for f in findings] == [
        ("engine", True, f"docker {docker_engine.runtime_version()}"),
        ("cgroups", True, cgroups.layout()),
    ]


def test_an_engine_with_nothing_more_to_check_goes_straight_to_the_run(subprocess_engine: ExecutionEngine) -> None:
    findings = diagnose(subprocess_engine)
    assert [(f.name, f.ok) for f in findings] == [("engine", True), ("run", True)], findings
    assert findings[0].text == f"subprocess {subprocess_engine.runtime_version()}"  # no platform


def test_an_unavailable_engine_is_one_failing_finding_that_says_why(tmp_path: Path) -> None:
    refusing = get_engine("subprocess", EngineConfig(images_dir=tmp_path, state_dir=tmp_path))
    (finding,) = diagnose(refusing)
    assert not finding.ok
    assert finding.name == "engine" and "not a sandbox" in finding.text


def test_it_stops_at_the_first_failing_host_finding(subprocess_engine: ExecutionEngine) -> None:
    class BrokenHost(SubprocessEngine):
        def host_findings(self) -> list[Finding]:
            return [Finding("disk", False, "full"), Finding("later", True, "never reached")]

    findings = diagnose(BrokenHost(subprocess_engine.config))
    assert [(f.name, f.ok) for f in findings] == [("engine", True), ("disk", False)]
