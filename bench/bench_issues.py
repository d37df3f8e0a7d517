"""GET /api/issues across 20 repositories × 100 open issues, the fake GitHub answering in 50 ms.

Measured in one run, against one fake GitHub (in its own process, so its work does not
share this process's GIL):
- a single GitHub request (one issues page, 100 issues) — the yardstick of the targets;
- GET /api/issues for one repository (cold);
- GET /api/issues for all 20, cold (empty ETag cache) and warm (every page answered 304),
  plus warm in a fresh process (ETags and bodies read from the database, nothing memoised);
- the sequential baseline: the same 20 listings requested one after another, cold and warm.
Targets (issue 5): cold < 2× a single request, warm < 1.5×.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "optio.settings")

REPOS = 20
ISSUES = 100
LATENCY = 0.05
ROUNDS = 7


def _serve_fake(conn, repos: int, issues: int, latency: float) -> None:
    """Child process: a populated FakeGitHub; answers 'stats' / 'clear' / 'stop' on the pipe."""
    from tests.fakes.github import FakeGitHub

    fake = FakeGitHub(latency=latency, rate_limit=10**9)
    for r in range(repos):
        for i in range(issues):
            fake.add_issue(
                f"bench/repo{r:02d}",
                f"Issue {i} of repo {r}: something to fix",
                body="Steps to reproduce: open the page, click the button, see the error. " * 3,
                labels=["bug"] if i % 2 else ["feature", "ui"],
                assignee="alice" if i % 3 == 0 else None,
            )
    fake.start()
    conn.send((fake.url, fake.token))
    while True:
        command = conn.recv()
        if command == "stop":
            break
        if command == "clear":
            fake.clear_log()
            conn.send(True)
        elif command == "stats":
            statuses: dict[int, int] = {}
            for r in fake.requests:
                statuses[r.status] = statuses.get(r.status, 0) + 1
            conn.send((statuses, fake.max_in_flight))
    fake.stop()


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment, teardown_test_environment

    import optio.asgi  # noqa: F401  (start-up as a served process has it, gc.freeze included)
    from bench.common import summary, table
    from integrations import http
    from integrations.github import client as gh_client
    from integrations.github import etags, issues
    from integrations.github.models import CachedResponse
    from optio import secrets
    from optio.models import ApiToken, Repo

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_fake, args=(child, REPOS, ISSUES, LATENCY), daemon=True)
    proc.start()
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        url, token = parent.recv()
        settings.GITHUB_API_URL = url
        settings.OPTIO_ALLOW_PRIVATE_URLS = True
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user("bench", password=None)
        _, api_token = ApiToken.objects.issue(user, name="bench")
        secrets.set_secret("GITHUB_TOKEN", token)
        repos = [Repo.objects.create(url=f"https://github.com/bench/repo{r:02d}") for r in range(REPOS)]
        web = Client(HTTP_AUTHORIZATION=f"Bearer {api_token}")

        def get(path: str) -> float:
            started = time.perf_counter()
            resp = web.get(path)
            elapsed = time.perf_counter() - started
            if resp.status_code != 200 or resp.json()["errors"]:
                raise RuntimeError(f"{path}: {resp.status_code} {resp.content[:300]!r}")
            return elapsed * 1000

        def fresh_process() -> None:
            etags.writer.drain()
            etags.memo.clear()
            issues.summaries.clear()

        def forget() -> None:
            fresh_process()
            CachedResponse.objects.all().delete()

        def stats() -> tuple[dict, int]:
            parent.send("stats")
            return parent.recv()

        def clear() -> None:
            parent.send("clear")
            parent.recv()

        # Warm up connections and code paths once; nothing below is measured from a cold import.
        forget()
        get("/api/issues")
        single_url = gh_client.api_url("/repos/bench/repo00/issues", {"state": "open", "per_page": 100})
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}

        single, one_repo, cold, warm, warm_fresh, seq_cold, seq_warm = [], [], [], [], [], [], []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            response = http.request("GET", single_url, headers=headers, max_response=gh_client.MAX_RESPONSE_BYTES)
            single.append((time.perf_counter() - started) * 1000)
            assert response.status == 200 and len(response.json()) == ISSUES

            forget()
            one_repo.append(get(f"/api/issues?repo={repos[0].pk}"))

            forget()
            clear()
            cold.append(get("/api/issues"))
            cold_stats = stats()
            clear()
            warm.append(get("/api/issues"))
            warm_stats = stats()
            fresh_process()  # ETags and bodies come from the database
            warm_fresh.append(get("/api/issues"))

            forget()
            seq_cold.append(sum(get(f"/api/issues?repo={r.pk}") for r in repos))
            seq_warm.append(sum(get(f"/api/issues?repo={r.pk}") for r in repos))

        base = summary(single)["p50"]
        rows = []
        for name, values in [
            ("single GitHub request (1 page, 100 issues)", single),
            ("GET /api/issues, 1 repo, cold", one_repo),
            ("GET /api/issues, 20 repos, cold", cold),
            ("GET /api/issues, 20 repos, warm (all 304)", warm),
            ("GET /api/issues, 20 repos, warm, fresh process", warm_fresh),
            ("sequential baseline, 20 repos, cold", seq_cold),
            ("sequential baseline, 20 repos, warm", seq_warm),
        ]:
            s = summary(values)
            rows.append([name, s["n"], s["p50"], s["p99"], s["p50"] / base])
        print(
            table(
                f"GET /api/issues — {REPOS} repos × {ISSUES} open issues, fake GitHub latency {LATENCY * 1000:.0f} ms",
                ["measurement", "n", "p50 ms", "p99 ms", "× single request"],
                rows,
            )
        )
        cold_p50, warm_p50 = summary(cold)["p50"], summary(warm)["p50"]
        print(
            table(
                "Targets and speed-up over the sequential baseline",
                ["", "ratio", "target", "vs sequential"],
                [
                    ["cold", cold_p50 / base, "< 2.0", f"{summary(seq_cold)['p50'] / cold_p50:.1f}× faster"],
                    ["warm", warm_p50 / base, "< 1.5", f"{summary(seq_warm)['p50'] / warm_p50:.1f}× faster"],
                ],
            )
        )
        print(
            f"\nLast cold run: GitHub answered {cold_stats[0]} (max {cold_stats[1]} in flight); "
            f"last warm run: {warm_stats[0]}."
        )
    finally:
        etags.writer.drain()  # no cache row written behind may outlive the benchmark's database
        parent.send("stop")
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
