"""`deals` commands as real processes, without paying Python's start-up for each one.

A test that runs many short `deals` commands (tests/test_cli_errors.py runs about sixty)
spends most of its time starting Python and importing the CLI, again and again. A
`Deals` runner starts one helper process that imports the CLI once, the way the
`deals` console script does (`from service.cli.main import main`), and forks a child
for each command. The child is a process of its own, as a user's would be: its own
working folder, environment, argv, stdin (/dev/null), stdout and stderr (files, read
back as the run's output), and it leaves through `sys.exit(main())`, as the console
script does, so an exception that escapes prints its traceback and exits 1 exactly as
it would there. Only what the CLI imports lazily, per command, is imported in the child.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

# The helper: reads one JSON request a line, forks, and answers the child's exit code.
HELPER = r"""
import json, os, sys
from service.cli.main import main

def child(request):
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for fd, to in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, to)
        os.close(fd)
    sys.argv = request["argv"]
    sys.exit(main())

for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        child(request)  # never returns: the child leaves through sys.exit, or an exception
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""

DEALS = str(Path(sys.executable).parent / "deals")


class Deals:
    """Runs `deals ARGS` in a forked child of the helper; see the module's docstring."""

    def __init__(self, helper: subprocess.Popen[str], folder: Path) -> None:
        self.helper = helper
        self.folder = folder
        self.runs = 0

    def run(
        self, args: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        assert self.helper.stdin is not None
        self.runs += 1
        stdout = self.folder / f"{self.runs}.out"
        stderr = self.folder / f"{self.runs}.err"
        request = {
            "argv": [DEALS, *args],
            "cwd": str(cwd),
            "env": dict(env),
            "stdout": str(stdout),
            "stderr": str(stderr),
        }
        self.helper.stdin.write(json.dumps(request) + "\n")
        self.helper.stdin.flush()
        answer = _readline(self.helper, timeout)
        return subprocess.CompletedProcess(
            [DEALS, *args], int(answer), stdout.read_text(), stderr.read_text()
        )


def _readline(helper: subprocess.Popen[str], timeout: float) -> str:
    assert helper.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(helper.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            helper.kill()
            raise subprocess.TimeoutExpired(DEALS, timeout)
    line = helper.stdout.readline()
    assert line, f"the helper exited ({helper.poll()})"
    return line


@contextmanager
def deals(folder: Path) -> Iterator[Deals]:
    """A `Deals` runner while the block runs; its children's output files go to `folder`."""
    helper = subprocess.Popen(
        [sys.executable, "-c", HELPER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield Deals(helper, folder)
    finally:
        assert helper.stdin is not None
        helper.stdin.close()
        try:
            helper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
