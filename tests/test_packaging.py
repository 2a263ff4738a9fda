"""Dockerfile and compose.yaml, checked without a Docker engine."""

from __future__ import annotations

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


def test_compose_names_its_services() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "migrate", "api"}
    assert "healthcheck" in services["db"]
    assert compose["volumes"]
    assert "pgdata" in compose["volumes"]
    assert services["migrate"]["restart"] == "no"
    depends = services["api"]["depends_on"]
    assert depends["db"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
