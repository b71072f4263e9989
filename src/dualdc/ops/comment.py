"""Post a Markdown report as the summary comment of a pull request (GitHub) or merge request (GitLab).

The pipelines call ``invoke comment --file build/plan.md --pr N``. The comment carries a hidden
marker, so each new push *updates* the same comment instead of adding another. Only the
platform's own REST API is used (air-gapped: no third-party action or CLI), with the job's
token:

- GitHub Actions (``GITHUB_ACTIONS=true``): ``GITHUB_API_URL``, ``GITHUB_REPOSITORY``, ``GITHUB_TOKEN``;
- GitLab CI (``GITLAB_CI=true``): ``CI_API_V4_URL``, ``CI_PROJECT_ID``, ``DUALDC_GITLAB_TOKEN``.

The body passes through :func:`dualdc.base.redact.scrub` and is cut to the platform's limit;
tokens never appear in messages.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from dualdc.base import redact
from dualdc.reports.drift import cut

TIMEOUT = 30
MAX_PAGES = 20
GITHUB_LIMIT = 65_536
GITLAB_LIMIT = 1_000_000


class CommentError(Exception):
    """The comment could not be posted (configuration or API error)."""


@dataclass(frozen=True)
class Target:
    platform: str
    api: str
    project: str
    number: int
    token: str

    def headers(self) -> dict[str, str]:
        if self.platform == "github":
            return {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28"}
        return {"PRIVATE-TOKEN": self.token}

    @property
    def limit(self) -> int:
        return GITHUB_LIMIT if self.platform == "github" else GITLAB_LIMIT

    def list_url(self, page: int) -> str:
        if self.platform == "github":
            return f"{self.api}/repos/{self.project}/issues/{self.number}/comments?per_page=100&page={page}"
        project = urllib.parse.quote(self.project, safe="")
        return f"{self.api}/projects/{project}/merge_requests/{self.number}/notes?per_page=100&page={page}"

    def create_url(self) -> str:
        if self.platform == "github":
            return f"{self.api}/repos/{self.project}/issues/{self.number}/comments"
        project = urllib.parse.quote(self.project, safe="")
        return f"{self.api}/projects/{project}/merge_requests/{self.number}/notes"

    def update(self, comment_id: int) -> tuple[str, str]:
        if self.platform == "github":
            return "PATCH", f"{self.api}/repos/{self.project}/issues/comments/{comment_id}"
        project = urllib.parse.quote(self.project, safe="")
        return "PUT", f"{self.api}/projects/{project}/merge_requests/{self.number}/notes/{comment_id}"


def detect(number: int, environ: dict[str, str] | None = None) -> Target:
    """The platform and API to post to, from the CI job's environment."""
    env = dict(os.environ if environ is None else environ)
    if env.get("GITHUB_ACTIONS") == "true":
        need = ("GITHUB_API_URL", "GITHUB_REPOSITORY", "GITHUB_TOKEN")
        missing = [n for n in need if not env.get(n)]
        if missing:
            raise CommentError(f"GitHub Actions job without {', '.join(missing)}; pass the job's token as "
                               "GITHUB_TOKEN (permissions: pull-requests: write)")
        return Target("github", env["GITHUB_API_URL"].rstrip("/"), env["GITHUB_REPOSITORY"], number,
                      env["GITHUB_TOKEN"])
    if env.get("GITLAB_CI") == "true":
        need = ("CI_API_V4_URL", "CI_PROJECT_ID", "DUALDC_GITLAB_TOKEN")
        missing = [n for n in need if not env.get(n)]
        if missing:
            raise CommentError(f"GitLab CI job without {', '.join(missing)}; set DUALDC_GITLAB_TOKEN to a "
                               "project access token with the api scope (masked, protected)")
        return Target("gitlab", env["CI_API_V4_URL"].rstrip("/"), env["CI_PROJECT_ID"], number,
                      env["DUALDC_GITLAB_TOKEN"])
    raise CommentError("not running in GitHub Actions or GitLab CI (GITHUB_ACTIONS / GITLAB_CI unset): "
                       "nothing to comment on")


def _request(target: Target, method: str, url: str, payload: dict[str, Any] | None = None) -> Any:
    data = json.dumps(payload).encode("utf-8") if payload is not None else None
    headers = target.headers() | ({"Content-Type": "application/json"} if data is not None else {})
    parts = urllib.parse.urlsplit(url)
    shown = parts._replace(query="").geturl()
    if parts.scheme not in ("https", "http"):
        raise CommentError(f"{shown}: the API URL must be http(s)")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - scheme checked above
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", errors="replace")
        message = f"{method} {shown}: HTTP {exc.code} {exc.reason}: {redact.scrub(detail)}"
        raise CommentError(message) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommentError(f"{method} {shown}: {reason}") from None
    try:
        return json.loads(body) if body else None
    except ValueError:
        raise CommentError(f"{method} {shown}: the answer is not JSON") from None


def marker_line(marker: str) -> str:
    return f"<!-- dualdc:{marker} -->"


def post(target: Target, text: str, marker: str = "plan") -> tuple[str, int]:
    """Create or update the marked comment; returns ('created'|'updated', comment id)."""
    tag = marker_line(marker)
    body = tag + "\n" + redact.scrub(text)
    if len(body) > target.limit:
        body = cut(body, target.limit - 200) + "\n\n> Truncated to fit a comment; see the job's artifacts.\n"
    existing = None
    for page in range(1, MAX_PAGES + 1):
        comments = _request(target, "GET", target.list_url(page))
        if not isinstance(comments, list) or not comments:
            break
        for comment in comments:
            if isinstance(comment, dict) and str(comment.get("body", "")).startswith(tag):
                existing = int(comment["id"])
        if len(comments) < 100:
            break
    if existing is not None:
        method, url = target.update(existing)
        _request(target, method, url, {"body": body})
        return "updated", existing
    created = _request(target, "POST", target.create_url(), {"body": body})
    return "created", int(created["id"]) if isinstance(created, dict) and "id" in created else 0
