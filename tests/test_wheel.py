"""The wheel, installed in a fresh virtual environment outside the checkout, migrates
a new database and serves: what a deployment gets, not what the checkout happens
to provide.

The wheel builds as `pip wheel` builds it (an isolated build environment with
the setuptools of pyproject.toml, from the package index like `make install`).
Installing needs no network: --no-deps, and the new environment sees this one's
dependencies through a .pth line naming this site-packages. Python processes
.pth files only in site directories, not in folders a .pth line appends, so
the editable install of `service` here does not leak into the new environment:
the test checks that `service` is imported from the new environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import ENV_VARS
from tests import ROOT, pg
from tests.serving import free_port

# What a build of the checkout must not pick up (and must not write into).
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".data",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "bench",
)


def run(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment, outside the checkout, with the wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.resolve().is_relative_to(ROOT)
    # Built from a copy, so the build's build/ and *.egg-info stay out of the checkout.
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    wheels = tmp / "wheels"
    wheel_cmd = ["pip", "wheel", "--no-deps", "--disable-pip-version-check", "--quiet"]
    run([sys.executable, "-m", *wheel_cmd, "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob("deals_service-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for folder, package in (("sql", "service/sql"), ("migrations", "service/migrations")):
        shipped = {
            Path(n).name for n in names if n.startswith(f"{package}/") and n.endswith(".sql")
        }
        assert shipped == {p.name for p in (ROOT / folder).glob("*.sql")}, package

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    install = ["pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet"]
    run([sys.executable, "-m", *install, str(wheel)])
    site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
        ).stdout.strip()
    )
    (site / "zz_dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without settings or paths that could reach the checkout."""
    drop = {*ENV_VARS, "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def test_service_comes_from_the_new_environment(installed: Path, tmp_path: Path) -> None:
    code = (
        "import service, service.sql, service.migrations; from service import data_dir; "
        "print(service.__file__); "
        "print(sorted(p.name for p in data_dir('service.sql').glob('*.sql'))); "
        "print(sorted(p.name for p in data_dir('service.migrations').glob('*.sql')))"
    )
    out = run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, env=environment())
    where, sql, migrations = out.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(installed.resolve()), where
    assert sql == str(sorted(p.name for p in (ROOT / "sql").glob("*.sql")))
    assert migrations == str(sorted(p.name for p in (ROOT / "migrations").glob("*.sql")))
    assert "[]" not in (sql, migrations)


@pytest.fixture
def empty_database(admin_url: str) -> Iterator[str]:
    name = f"wheel_{os.getpid()}"
    pg.admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg.admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    yield pg.with_database(admin_url, name)
    pg.drop(admin_url, name)


def status_of(url: str) -> int | None:
    """The HTTP status, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_the_installed_wheel_migrates_and_serves(
    installed: Path, empty_database: str, tmp_path: Path
) -> None:
    deals = str(installed / "bin" / "deals")
    env = environment(DATABASE_URL=empty_database, SHUTDOWN_DRAIN_SECONDS="0")  # no drain at SIGINT
    migrated = run([deals, "migrate", "apply"], cwd=tmp_path, env=env)
    assert "migration(s) applied" in migrated.stdout
    status = run([deals, "migrate", "status"], cwd=tmp_path, env=env)
    assert status.stdout.startswith("applied")
    assert "pending" not in status.stdout

    port = free_port()
    server = subprocess.Popen(
        [deals, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        answers: dict[str, int | None] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.poll() is None:
            answers = {
                p: status_of(f"http://127.0.0.1:{port}{p}") for p in ("/health/ready", "/deals")
            }
            if None not in answers.values():
                break
            time.sleep(0.1)
        assert answers == {"/health/ready": 200, "/deals": 200}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            output, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert "Traceback" not in output, output
