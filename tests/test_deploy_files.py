"""The production files under deploy/ (docs/deploy.md) start what the repository has, agree with the
settings, and pass systemd-analyze, nginx -t and promtool where those tools are installed.

Each test first checks what needs no tool, so none is skipped on a machine without them.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import yaml
from django.conf import settings
from prometheus_client.metrics import MetricWrapperBase

from evaluations.monitoring import metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
DOC = ROOT / "docs" / "deploy.md"
INSTALL_DIR = "/opt/crucible"  # where docs/deploy.md installs the repository
PROCESSES = {
    "web": "crucible-web.service",
    "worker": "crucible-worker@.service",
    "reconciler": "crucible-reconciler.service",
}


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def _exec_start(name: str) -> list[str]:
    return shlex.split(_unit(name)["Service"]["ExecStart"])


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, _, command in (line.partition(": ") for line in lines if line)}


def _runs_procfile_command(unit: list[str], procfile: list[str]) -> bool:
    """The unit's words hold the Procfile's in order (a word with a $ stands for any value); the unit
    may add options of its own."""
    unit = [word.removeprefix(f"{INSTALL_DIR}/") for word in unit]
    if unit[:1] != procfile[:1]:
        return False
    rest = iter(unit[1:])
    return all(any("$" in want or word == want for word in rest) for want in procfile[1:])


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)\s*(s|min)?", value).groups()
    return float(number) * (60 if unit == "min" else 1)


def test_each_unit_runs_its_procfile_process() -> None:
    procfile = _procfile()

    assert set(procfile) == set(PROCESSES)
    for process, unit in PROCESSES.items():
        assert _runs_procfile_command(_exec_start(unit), procfile[process]), (
            f"deploy/systemd/{unit} must start what the Procfile's {process!r} line starts: "
            f"{shlex.join(procfile[process])}"
        )


def test_the_units_name_programs_and_modules_the_repository_has() -> None:
    for unit in PROCESSES.values():
        service = _unit(unit)["Service"]
        program = Path(_exec_start(unit)[0])
        assert service["WorkingDirectory"] == INSTALL_DIR
        assert (ROOT / program.relative_to(INSTALL_DIR)).exists(), program
        assert service["EnvironmentFile"] == "/etc/crucible/crucible.env"

    web, worker, reconciler = (_exec_start(unit) for unit in PROCESSES.values())
    assert (ROOT / web[web.index("-m") + 1].replace(".", "/")).with_suffix(".py").exists()
    assert (ROOT / web[-1].partition(":")[0].replace(".", "/")).with_suffix(".py").exists()
    assert (ROOT / worker[worker.index("-A") + 1] / "celery.py").exists()
    # Every queue a task is routed to: runs, and webhook tries (evaluations/webhooks/).
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert set(worker[worker.index("-Q") + 1].split(",")) == routed | {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert reconciler[1:] == ["manage.py", "reconcile"]
    assert (ROOT / "evaluations" / "management" / "commands" / "reconcile.py").exists()


def test_a_stopping_worker_has_time_to_end_its_runs_and_sandboxes_itself() -> None:
    service = _unit(PROCESSES["worker"])["Service"]
    stop_timeout = _seconds(service["TimeoutStopSec"])

    # Only the main process gets SIGTERM: the sandbox janitors of its pool would tear sandboxes down at once.
    assert service["KillMode"] == "mixed"
    assert stop_timeout > settings.CRUCIBLE_STOP_GRACE_SECONDS + settings.CRUCIBLE_FINAL_WRITE_RETRY_SECONDS
    # A worker that cannot start sandboxes exits with this status; restarting it would loop.
    assert service["RestartPreventExitStatus"] == "78"
    assert "os._exit(78)" in (ROOT / "evaluations" / "runs" / "worker.py").read_text()


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    for unit in PROCESSES.values():
        assert _unit(unit)["Service"]["Restart"] in ("always", "on-failure")

    if shutil.which("systemd-analyze") is None:
        return
    # The units as they would be with the repository installed here (their programs must exist).
    for unit in PROCESSES.values():
        (tmp_path / unit).write_text((UNITS / unit).read_text().replace(INSTALL_DIR, str(ROOT)))
    checked = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / unit) for unit in PROCESSES.values())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 after "ignoring" a bad value, so any output is a failure.
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def _nginx_config() -> str:
    return (DEPLOY / "nginx" / "crucible.conf").read_text()


NGINX_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", value.lower()).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


def test_nginx_passes_the_largest_request_the_site_accepts() -> None:
    (limit,) = re.findall(r"^\s*client_max_body_size\s+(\S+);", _nginx_config(), re.MULTILINE)

    assert _size(limit) >= settings.CRUCIBLE_MAX_REQUEST_BYTES
    assert _size(limit) >= settings.CRUCIBLE_MAX_UPLOAD_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def test_nginx_proxies_to_the_web_unit_with_websockets_and_keeps_metrics_to_the_scraper() -> None:
    config = _nginx_config()
    web = _exec_start(PROCESSES["web"])

    assert f"server {web[web.index('-b') + 1]}:{web[web.index('-p') + 1]};" in config
    assert re.search(r"location /ws/ \{[^}]*proxy_pass", config)
    assert "proxy_set_header Upgrade $http_upgrade;" in config
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in config  # CRUCIBLE_BEHIND_TLS_PROXY reads it
    metrics_location = re.search(r"location = /metrics \{([^}]*)\}", config).group(1)
    assert "deny all;" in metrics_location


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    assert "ssl_certificate /etc/ssl/crucible/fullchain.pem;" in _nginx_config()

    if shutil.which("nginx") is None or shutil.which("openssl") is None:
        return
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=crucible.example.org"]
        + ["-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (tmp_path / "site.conf").write_text(_nginx_config().replace("/etc/ssl/crucible/", f"{tmp_path}/"))
    # nginx -t makes its temporary directories, as the user it would run as: never the system's.
    temp_paths = "".join(f"    {kind}_temp_path {tmp_path}/{kind};\n" for kind in NGINX_TEMP_PATHS)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp_paths}    include {tmp_path}/site.conf;\n}}\n"
    )
    checked = subprocess.run(
        ["nginx", "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert all((tmp_path / kind).is_dir() for kind in NGINX_TEMP_PATHS)


def _defined_metric_names() -> set[str]:
    """What evaluations/monitoring/metrics.py defines: the metrics processes record, and the (name,
    help) pairs of those read at each scrape."""
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names.add(value._name)
        elif isinstance(value, tuple) and value and str(value[0]).startswith("crucible_"):
            names.add(value[0])
    return names


def test_the_alerts_use_metrics_that_exist() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "crucible-rules.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    defined = _defined_metric_names()

    assert {"CrucibleQueueStuck", "CrucibleNoWorker", "CrucibleRunErrors"} <= set(alerts)
    for alert, expr in alerts.items():
        used = set(re.findall(r"\bcrucible_[a-z_]+", expr))
        assert used, alert
        unknown = {name for name in used if re.sub(r"_(total|bucket|sum|count)$", "", name) not in defined}
        assert unknown == set(), f"{alert} uses metrics that evaluations/monitoring/metrics.py does not define"


def test_promtool_accepts_the_config_and_the_alerts_fire_when_they_should(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Token"

    if shutil.which("promtool") is None:
        return
    # The config names files under /etc/prometheus; give it its own.
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text().replace("/etc/prometheus/", f"{tmp_path}/")
    (tmp_path / "prometheus.yml").write_text(text)
    (tmp_path / "crucible-token").write_text("not-a-token\n")
    shutil.copy(DEPLOY / "prometheus" / "crucible-rules.yml", tmp_path)
    for command in (
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        ["promtool", "test", "rules", str(DEPLOY / "prometheus" / "crucible-rules.test.yml")],
    ):
        checked = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_deployment_doc_shows_every_file_as_it_is() -> None:
    doc = DOC.read_text()
    shown = [path for path in sorted(DEPLOY.rglob("*")) if path.is_file() and not path.name.endswith(".test.yml")]

    assert len(shown) >= 6
    assert [str(p.relative_to(ROOT)) for p in shown if p.read_text().strip() not in doc] == []


def test_the_deployment_doc_sets_only_settings_that_exist() -> None:
    known = set(re.findall(r'"(CRUCIBLE_[A-Z_]+)"', (ROOT / "crucible_site" / "settings.py").read_text()))
    known |= set(re.findall(r"\b(CRUCIBLE_[A-Z_]+)", (ROOT / "Procfile").read_text()))
    texts = [DOC.read_text(), *(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())]
    named = {name for text in texts for name in re.findall(r"\b(CRUCIBLE_[A-Z_]+)\b", text)}

    assert named - known == set()


def test_the_deployment_doc_links_files_that_exist_and_the_readme_links_it() -> None:
    targets = re.findall(r"\]\(([^)\s#]+)", DOC.read_text())

    assert targets
    assert [t for t in targets if "://" not in t and not (DOC.parent / t).exists()] == []
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()
