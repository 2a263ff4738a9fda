"""Smoke test of `make run`, with a bounded start and a bounded stop: CI's last step.

Starts `make run` (embedded PostgreSQL, migrations, the 50,000-row sample, `deals serve`)
in a session of its own, waits for GET /health, checks /docs and /health/ready, then stops
it: SIGTERM to its whole process group, SIGKILL if make or anything it started (the
server) has not exited within STOP_SECONDS
(after SIGUSR1, which has `deals serve` write its threads' stacks to the log, printed),
then `deals db stop`. Every wait has a deadline, so a server that does not stop fails this
script with a message instead of holding CI until its own timeout.

Usage: .venv/bin/python ops/smoke-run.py [PORT]   (talks only to 127.0.0.1)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

START_SECONDS = 300
STOP_SECONDS = 30
DB_STOP_SECONDS = 120


def _plain_signals() -> None:
    """In the child: default dispositions and an empty mask, whatever CI's runner set.

    An ignored or blocked SIGTERM is inherited through fork and exec; make keeps an
    ignored one, and a Python server never sees a blocked one.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def get(url: str, timeout: float) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (127.0.0.1)
        return int(response.status), response.read()


def wait_for_health(base: str, run: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if run.poll() is not None:
            raise SystemExit(f"make run exited with {run.returncode} before /health answered")
        try:
            if get(f"{base}/health", 5)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"make run: /health did not answer 200 within {START_SECONDS} s")
        time.sleep(1)


def still_running(session: int) -> list[str]:
    """The processes of make's session (its group: started with a session of its own) that
    have not exited: pid, state and command; zombies, already exited, are left out."""
    listed = subprocess.run(
        ["ps", "-o", "pid=,stat=,args=", "-g", str(session)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in listed.stdout.splitlines() if line.split()[1:2] != ["Z"]]


def dump_stacks(run: subprocess.Popen[bytes], log: str, left: list[str]) -> None:
    """SIGUSR1 to every process still running (`left`) but make itself: `deals serve` writes
    its threads' stacks to the log (service/serve.py), which is printed, what it was doing."""
    for pid in (int(line.split()[0]) for line in left):
        if pid != run.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
    time.sleep(1)
    print(f"make run's output ({log}):", file=sys.stderr)
    with open(log, encoding="utf-8", errors="replace") as text:
        sys.stderr.write(text.read()[-12000:])


def stop(run: subprocess.Popen[bytes], log: str) -> None:
    """SIGTERM to make's group, then wait, STOP_SECONDS at most, for make and for everything
    it started: make exits at once on SIGTERM when its recipe is interrupted, while
    `deals serve` drains its connections; SIGKILLing the group then would kill the
    server mid-drain and never see whether it stops by itself."""
    started = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.pid, signal.SIGTERM)
    try:
        run.wait(timeout=STOP_SECONDS)
        while still_running(run.pid):
            if time.monotonic() - started > STOP_SECONDS:
                raise subprocess.TimeoutExpired(["make", "run"], STOP_SECONDS)
            time.sleep(0.1)
        print(
            f"smoke: make run and everything it started stopped "
            f"{time.monotonic() - started:.1f} s after SIGTERM"
        )
    except subprocess.TimeoutExpired as timed_out:
        left = still_running(run.pid)
        print("still running:", *left, sep="\n  ", file=sys.stderr)
        dump_stacks(run, log, left)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=STOP_SECONDS)
        message = f"make run (or what it started) did not stop within {STOP_SECONDS} s of SIGTERM"
        message += " (killed)"
        raise SystemExit(message) from timed_out
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # anything of its group still there
        subprocess.run([".venv/bin/deals", "db", "stop"], timeout=DB_STOP_SECONDS, check=False)


def main() -> None:
    port = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("API_PORT", "8000")
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "API_PORT": port}
    with tempfile.NamedTemporaryFile(prefix="make-run.", suffix=".log", delete=False) as log:
        run = subprocess.Popen(
            ["make", "run"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_plain_signals,  # a CI script: no threads
        )
    try:
        wait_for_health(base, run)
        print("smoke: /health 200")
        status, body = get(f"{base}/docs", 10)
        assert status == 200, status
        assert b"<html" in body.lower()
        print("smoke: /docs 200")
        assert get(f"{base}/health/ready", 10)[0] == 200
        print("smoke: /health/ready 200")
    except BaseException:
        print(f"make run's output ({log.name}):", file=sys.stderr)
        with open(log.name, encoding="utf-8", errors="replace") as text:
            sys.stderr.write(text.read()[-4000:])
        raise
    finally:
        stop(run, log.name)
    os.unlink(log.name)
    print("smoke test of make run passed")


if __name__ == "__main__":
    main()
