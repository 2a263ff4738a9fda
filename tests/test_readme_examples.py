"""The README's API examples, sent to a live server: a README that no longer says what
the service answers fails here.

An example in README.md is the line `<!-- example -->`, a ```sh block holding one
curl command, and a ```http block with the answer: the status line, the headers
that matter (others may come too), a blank line and the body, if any (none means
an empty body). In the body `"..."` stands for any value, and a member
`"...": "..."` for members left out; in a header value `...` stands for any text.
The status code is compared, not the reason phrase (Python 3.13 renamed 422's).

The command is parsed (-X, -H, -d/--data, -i, -I, -s and the URL) and sent as
curl sends it: no Accept-Encoding unless the example sets one, and a body sent
with -d is application/x-www-form-urlencoded unless a Content-Type header says
otherwise; http://127.0.0.1:8000 becomes the test server. No curl binary is needed.

The answers are those of the seeded test data (tests/known.py). Examples that
only read run against the session's read-only copy of it, each a test of its
own; the examples that write (POST, PATCH, DELETE) run in README order, as one
test, against a clone of their own, so each sees what the ones before it did.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.known import Known
from tests.serving import Server, serving

README = Path(__file__).resolve().parent.parent / "README.md"
README_HOST = "http://127.0.0.1:8000"
WILDCARD = "..."
EXAMPLE = re.compile(
    r"^<!-- example -->\n+```sh\n(?P<command>.*?)\n```\n+```http\n(?P<answer>.*?)\n```$",
    re.MULTILINE | re.DOTALL,
)
WRITES = {"POST", "PATCH", "DELETE", "PUT"}


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: str


@dataclass(frozen=True)
class Example:
    line: int
    command: str
    request: Request
    answer: Answer

    @property
    def name(self) -> str:
        return f"line {self.line}: {self.request.method} {self.request.url}"


def parse_curl(command: str) -> Request:
    """The request a curl command sends, for the options the README uses."""
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "curl", command
    method: str | None = None
    head = False
    headers: list[tuple[str, str]] = []
    data: str | None = None
    url: str | None = None
    rest = iter(words[1:])
    for word in rest:
        if word in ("-X", "--request"):
            method = next(rest)
        elif word in ("-H", "--header"):
            name, colon, value = next(rest).partition(":")
            assert colon, f"a header without a colon in {command}"
            headers.append((name.strip(), value.strip()))
        elif word in ("-d", "--data", "--data-raw"):
            assert data is None, f"one -d per example: {command}"
            data = next(rest)
        elif word in ("-I", "--head"):
            head = True
        elif word in ("-i", "--include", "-s", "--silent"):
            pass  # what curl prints, not what it sends
        elif word.startswith("-"):
            raise AssertionError(f"tests/test_readme_examples.py does not know curl's {word}")
        else:
            assert url is None, f"one URL per example: {command}"
            url = word
    assert url is not None, f"no URL in {command}"
    assert url.startswith(README_HOST), f"the README's host: {command}"
    if data is not None and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))  # as curl does
    method = method or ("HEAD" if head else "POST" if data is not None else "GET")
    body = data.encode() if data is not None else None
    return Request(method, url.removeprefix(README_HOST), headers, body)


def parse_answer(text: str) -> Answer:
    head, _, body = text.partition("\n\n")
    status_line, *header_lines = head.split("\n")
    found = re.fullmatch(r"HTTP/1\.1 (\d{3})( .*)?", status_line)
    assert found is not None, f"a status line such as HTTP/1.1 200 OK, not {status_line!r}"
    headers = []
    for line in header_lines:
        name, colon, value = line.partition(":")
        assert colon, f'a header line such as `etag: "1"`, not {line!r}'
        headers.append((name.strip(), value.strip()))
    return Answer(int(found[1]), headers, body.strip())


def readme_examples() -> list[Example]:
    text = README.read_text(encoding="utf-8")
    examples = []
    for found in EXAMPLE.finditer(text):
        line = text.count("\n", 0, found.start()) + 1
        request = parse_curl(found["command"])
        examples.append(Example(line, found["command"], request, parse_answer(found["answer"])))
    return examples


EXAMPLES = readme_examples()
READS = [example for example in EXAMPLES if example.request.method not in WRITES]
WRITTEN = [example for example in EXAMPLES if example.request.method in WRITES]


# --- comparing an answer with the README's --------------------------------------------


def json_differences(expected: Any, actual: Any, at: str = "$") -> Iterator[str]:
    """Where actual differs from expected, with the README's wildcards."""
    if expected == WILDCARD:
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            yield f"{at}: expected an object, got {actual!r}"
            return
        members = {key: value for key, value in expected.items() if key != WILDCARD}
        for key in sorted(members.keys() - actual.keys()):
            yield f"{at}.{key}: missing"
        if expected.get(WILDCARD) != WILDCARD:
            for key in sorted(actual.keys() - members.keys()):
                yield f"{at}.{key}: not in the README ({actual[key]!r})"
        for key in sorted(members.keys() & actual.keys()):
            yield from json_differences(members[key], actual[key], f"{at}.{key}")
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            yield f"{at}: expected {len(expected)} items, got {actual!r}"
            return
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            yield from json_differences(want, got, f"{at}[{index}]")
    elif type(expected) is not type(actual) or expected != actual:
        yield f"{at}: the README says {expected!r}, the service {actual!r}"


def header_pattern(value: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in value.split(WILDCARD)))


def differences(example: Example, response: httpx.Response) -> list[str]:
    answer = example.answer
    found = []
    if response.status_code != answer.status:
        found.append(f"status {response.status_code}, the README says {answer.status}")
    for name, value in answer.headers:
        sent = response.headers.get(name)
        if sent is None:
            found.append(f"no {name} header")
        elif not header_pattern(value).fullmatch(sent):
            found.append(f"{name}: {sent!r}, the README says {value!r}")
    if not answer.body:
        if response.content:
            found.append(f"a body the README does not show: {response.text[:200]!r}")
    elif not response.content:
        found.append("no body, where the README shows one")
    else:
        try:
            actual = response.json()
        except ValueError:
            return [*found, f"the body is not JSON: {response.text[:200]!r}"]
        expected = json.loads(answer.body)
        found += list(json_differences(expected, actual))
    return found


def send(server: Server, example: Example) -> httpx.Response:
    request = example.request
    with httpx.Client(base_url=server.base, timeout=10) as client:
        # what curl sends by itself; httpx would also ask for gzip
        client.headers = httpx.Headers({"Accept": "*/*", "User-Agent": "curl/8 (README)"})
        return client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )


def check(server: Server, example: Example) -> None:
    response = send(server, example)
    problems = differences(example, response)
    assert not problems, (
        f"README.md {example.name}\n{example.command}\n"
        + "\n".join(f"  {problem}" for problem in problems)
        + f"\nthe service answered {response.status_code}: {response.text[:1000]}"
    )


# --- the tests -------------------------------------------------------------------------


def test_the_readme_has_examples_of_each_kind() -> None:
    methods = {example.request.method for example in EXAMPLES}
    assert methods >= {"GET", "HEAD", "POST", "PATCH", "DELETE"}
    statuses = {example.answer.status for example in EXAMPLES}
    assert statuses >= {200, 201, 204, 304, 404, 409, 422, 428}


def test_curl_commands_are_read_as_curl_sends_them() -> None:
    posted = parse_curl("curl -i http://127.0.0.1:8000/deals \\\n  -d '{\"a\": 1}'")
    assert posted == Request(
        "POST",
        "/deals",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b'{"a": 1}',
    )
    deleted = parse_curl("curl -i -X DELETE http://127.0.0.1:8000/deals/2 -H 'If-Match: \"2\"'")
    assert deleted == Request("DELETE", "/deals/2", [("If-Match", '"2"')], None)
    assert parse_curl("curl -I 'http://127.0.0.1:8000/deals?limit=1'").method == "HEAD"
    assert list(json_differences({"a": [1, "..."], "...": "..."}, {"a": [1, {}], "b": 2})) == []
    assert list(json_differences({"a": 1}, {"a": 1, "b": 2})) == ["$.b: not in the README (2)"]
    assert list(json_differences({"a": 1}, {"a": True})) == [
        "$.a: the README says 1, the service True"
    ]


def test_every_curl_block_is_an_example() -> None:
    """A curl command in a ```sh block that the test does not run could drift unnoticed."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(curl .*?)\n```", text, re.DOTALL)
    assert sorted(blocks) == sorted(example.command for example in EXAMPLES)
    assert text.count("<!-- example -->") == len(EXAMPLES), "a marker not followed by sh + http"


@pytest.fixture(scope="module")
def reading_server(
    shared_seeded_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A live server over the session's read-only copy of the known rows."""
    with serving(shared_seeded_url, tmp_path_factory.mktemp("readme") / "reads.log") as server:
        yield server


@pytest.mark.parametrize("example", READS, ids=[example.name for example in READS])
def test_a_reading_example(reading_server: Server, example: Example) -> None:
    check(reading_server, example)


def test_the_writing_examples_in_order(database_url: str, known: Known, tmp_path: Path) -> None:
    """On this test's own clone of the known rows: the new deal is id 31."""
    assert max(deal.id for deal in known.deals) == 30
    with serving(database_url, tmp_path / "writes.log") as server:
        for example in WRITTEN:
            check(server, example)
