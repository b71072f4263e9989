"""`invoke comment`: the PR/MR summary comment, against a local stand-in for the GitHub and GitLab APIs.

The real APIs are not reachable here (air-gapped); the stand-in is a real HTTP server on loopback that
answers the documented endpoints, so the requests themselves (method, path, headers, JSON) are real.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dualdc.ops import comment

TOKEN = "ghs_canarytoken0123456789"


class FakeApi:
    def __init__(self) -> None:
        self.comments: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.fail_with: int | None = None


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, str]]:
    state = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((self.command, self.path, dict(self.headers), data))
            if state.fail_with:
                self._answer(state.fail_with, {"message": f"Bad credentials {TOKEN}"})
                return
            if self.command == "GET":
                self._answer(200, state.comments if "page=1" in self.path else [])
            elif self.command == "POST":
                new = {"id": 100 + len(state.comments), "body": data["body"]}
                state.comments.append(new)
                self._answer(201, new)
            else:  # PATCH (GitHub) or PUT (GitLab)
                comment_id = int(self.path.rstrip("/").rsplit("/", 1)[1])
                for existing in state.comments:
                    if existing["id"] == comment_id:
                        existing["body"] = data["body"]
                self._answer(200, {"id": comment_id})

        do_GET = do_POST = do_PATCH = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def github_env(url: str) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": url,
        "GITHUB_REPOSITORY": "jbfg/dualdc",
        "GITHUB_TOKEN": TOKEN,
    }


def test_github_creates_then_updates_one_comment(api: tuple[FakeApi, str]) -> None:
    state, url = api
    target = comment.detect(7, github_env(url))
    assert comment.post(target, "## plan v1\n") == ("created", 100)
    state.comments.insert(0, {"id": 5, "body": "someone else's comment"})
    assert comment.post(target, "## plan v2\n") == ("updated", 100)
    assert [c["body"] for c in state.comments] == [
        "someone else's comment",
        "<!-- dualdc:plan -->\n## plan v2\n",
    ]
    methods = [(m, p.split("?")[0]) for m, p, _, _ in state.requests]
    assert methods == [
        ("GET", "/repos/jbfg/dualdc/issues/7/comments"),
        ("POST", "/repos/jbfg/dualdc/issues/7/comments"),
        ("GET", "/repos/jbfg/dualdc/issues/7/comments"),
        ("PATCH", "/repos/jbfg/dualdc/issues/comments/100"),
    ]
    headers = state.requests[1][2]
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_gitlab_uses_notes_and_private_token(api: tuple[FakeApi, str]) -> None:
    state, url = api
    env = {
        "GITLAB_CI": "true",
        "CI_API_V4_URL": url + "/api/v4",
        "CI_PROJECT_ID": "42",
        "DUALDC_GITLAB_TOKEN": TOKEN,
    }
    target = comment.detect(3, env)
    comment.post(target, "a", marker="drift")
    comment.post(target, "b", marker="drift")
    paths = [(m, p.split("?")[0]) for m, p, _, _ in state.requests]
    assert paths[1] == ("POST", "/api/v4/projects/42/merge_requests/3/notes")
    assert paths[3] == ("PUT", "/api/v4/projects/42/merge_requests/3/notes/100")
    assert state.requests[1][2]["Private-Token"] == TOKEN
    assert state.comments[0]["body"] == "<!-- dualdc:drift -->\nb"


def test_long_body_is_cut_to_the_limit(api: tuple[FakeApi, str]) -> None:
    state, url = api
    comment.post(comment.detect(1, github_env(url)), "line of a long plan\n" * 10_000)
    body = state.comments[0]["body"]
    assert len(body) <= comment.GITHUB_LIMIT and "Truncated to fit a comment" in body


def test_api_error_is_readable_and_never_shows_the_token(
    api: tuple[FakeApi, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = api
    state.fail_with = 401
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with pytest.raises(comment.CommentError) as raised:
        comment.post(comment.detect(1, github_env(url)), "x")
    assert "HTTP 401" in str(raised.value) and TOKEN not in str(raised.value)


def test_missing_configuration_is_explained() -> None:
    with pytest.raises(comment.CommentError, match="not running in GitHub Actions or GitLab CI"):
        comment.detect(1, {})
    with pytest.raises(comment.CommentError, match="without GITHUB_TOKEN"):
        comment.detect(
            1,
            {"GITHUB_ACTIONS": "true", "GITHUB_API_URL": "https://ghes.example", "GITHUB_REPOSITORY": "a/b"},
        )
