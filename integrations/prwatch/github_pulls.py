"""The GitHub calls the PR watcher makes, built on the client's conditional GETs.

Every GET goes out with the stored ETag (`If-None-Match`), so a PR nobody touched is
answered with 304s, which do not count against the rate limit. Errors are the client's
`GitHubError` subclasses.
"""

from __future__ import annotations

from integrations.github import client
from optio.models import Repo

# A head commit with more check runs than this is unusual; the rest would cost a request each 100.
MAX_CHECK_RUN_PAGES = 3


def _path(repo: Repo, rest: str) -> str:
    return f"/repos/{repo.owner}/{repo.name}/{rest}"


def get_pull(repo: Repo, number: int, *, token: str | None = None) -> dict:
    """State, merged, head SHA, mergeable.
    https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request"""
    return client.get_json(repo, _path(repo, f"pulls/{int(number)}"), token=token)


def list_check_runs(repo: Repo, ref: str, *, token: str | None = None) -> list[dict]:
    """The latest check run of each name on `ref` (`filter=latest`, GitHub's default, made explicit).
    https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference"""
    runs: list[dict] = []
    for page in range(1, MAX_CHECK_RUN_PAGES + 1):
        params = {"filter": "latest", "per_page": client.PER_PAGE}
        if page > 1:
            params["page"] = page
        data = client.get_json(repo, _path(repo, f"commits/{ref}/check-runs"), params=params, token=token)
        batch = list((data or {}).get("check_runs") or [])
        runs.extend(batch)
        if len(batch) < client.PER_PAGE or len(runs) >= int((data or {}).get("total_count") or 0):
            break
    return runs


def get_combined_status(repo: Repo, ref: str, *, token: str | None = None) -> dict:
    """Commit statuses (the older API some CI still uses), the latest per context.
    https://docs.github.com/en/rest/commits/statuses#get-the-combined-status-for-a-specific-reference"""
    params = {"per_page": client.PER_PAGE}
    return client.get_json(repo, _path(repo, f"commits/{ref}/status"), params=params, token=token) or {}


def list_reviews(repo: Repo, number: int, *, token: str | None = None) -> list[dict]:
    """Reviews in the order they were submitted.
    https://docs.github.com/en/rest/pulls/reviews#list-reviews-for-a-pull-request"""
    listing = client.paginate(repo, _path(repo, f"pulls/{int(number)}/reviews"), {"per_page": client.PER_PAGE},
                              token=token)  # fmt: skip
    return list(listing.items)
