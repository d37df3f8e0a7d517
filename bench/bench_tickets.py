"""Ticket sync: fake GitHub with 20 repositories × 500 labelled issues and fake Linear with
2,000 issues, each answering in 20 ms, in their own processes (so their work does not share
this process's GIL).

Measured in one run:
- the first full sync of each provider (every ticket becomes a queued task);
- a second sync with nothing changed: its time and the requests it made (GitHub: one
  conditional request per repository, answered 304; Linear: one `updatedAt >=` query);
- a single request to each fake, the yardstick.
Targets (issue 6): first sync under 20 s; unchanged re-sync under 1 s with one request per repository.

Task creation goes through the lifecycle service as in production (task + 2 events per
ticket, dispatch enqueued on commit); the Celery broker is the in-process memory transport,
as in `make run`, so event fan-out is enqueued but not executed here.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "optio.settings")

REPOS = 20
ISSUES_PER_REPO = 500
LINEAR_ISSUES = 2000
LATENCY = 0.02
TOTAL = REPOS * ISSUES_PER_REPO + LINEAR_ISSUES
LINEAR_KEY = "lin_api_bench_key"
T0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)


def _serve_github(conn) -> None:
    from tests.fakes.github import FakeGitHub

    fake = FakeGitHub(latency=LATENCY, rate_limit=10**9)
    for r in range(REPOS):
        for i in range(ISSUES_PER_REPO):
            fake.add_issue(
                f"bench/repo{r:02d}",
                f"Issue {i} of repo {r}: something to fix",
                "Steps to reproduce: open the page, click the button, see the error. " * 3,
                labels=["optio", "bug"] if i % 2 else ["optio"],
                updated_at=T0 + timedelta(seconds=i),  # issues of a real repository change at different times
            )
    _serve(conn, fake, fake.token)


def _serve_linear(conn) -> None:
    from tests.fakes.linear import FakeLinear

    fake = FakeLinear(api_keys=(LINEAR_KEY,), latency=LATENCY)
    team = fake.add_team("ENG")
    for n in range(LINEAR_ISSUES):
        fake.add_issue(team, f"Linear issue {n}", description="Something to build. " * 5, labels=["optio"])
    _serve(conn, fake, team.id)


def _serve(conn, fake, extra) -> None:
    """Child process: answers 'stats' (status counts since the last 'clear'), 'clear', 'stop'."""
    fake.start()
    conn.send((fake.url, extra))
    while True:
        command = conn.recv()
        if command == "stop":
            break
        if command == "clear":
            fake.requests.clear()
            conn.send(True)
        elif command == "stats":
            statuses: dict[int, int] = {}
            for r in fake.requests:
                status = getattr(r, "status", 200)
                statuses[status] = statuses.get(status, 0) + 1
            conn.send(statuses)
    fake.stop()


class Fake:
    def __init__(self, ctx, target):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child,), daemon=True)
        self.proc.start()
        self.url, self.extra = self.conn.recv()

    def call(self, command: str):
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    from bench.common import table
    from integrations import http
    from integrations.github import etags
    from optio import secrets
    from optio.celery import app
    from optio.models import Repo, Task
    from tickets import services, sync

    # Embedded-mode broker: dispatch jobs are enqueued in memory, never sent to a shared Redis.
    app.conf.broker_url = "memory://localhost/"
    app.conf.task_always_eager = False

    ctx = multiprocessing.get_context("spawn")
    gh, lin = Fake(ctx, _serve_github), Fake(ctx, _serve_linear)
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        settings.GITHUB_API_URL = gh.url
        settings.LINEAR_API_URL = lin.url
        settings.OPTIO_ALLOW_PRIVATE_URLS = True
        secrets.set_secret("GITHUB_TOKEN", gh.extra)
        repos = [Repo.objects.create(url=f"https://github.com/bench/repo{r:02d}") for r in range(REPOS)]
        github = services.create_provider("github", {"repos": [r.url for r in repos], "labels": ["optio"]}).provider
        linear = services.create_provider(
            "linear", {"apiKey": LINEAR_KEY, "teamId": lin.extra, "repoUrl": repos[0].url}
        ).provider

        def yardstick(url: str, method: str = "GET", **kw) -> float:
            started = time.perf_counter()
            http.request(method, url, **kw)
            return (time.perf_counter() - started) * 1000

        single_gh = min(
            yardstick(
                f"{gh.url}/repos/bench/repo00/issues?per_page=100", headers={"Authorization": f"Bearer {gh.extra}"}
            )
            for _ in range(3)
        )
        single_lin = min(
            yardstick(lin.url, "POST", headers={"Authorization": LINEAR_KEY, "Content-Type": "application/json"},
                      body=b'{"query": "{ viewer { id } }"}')
            for _ in range(3)
        )  # fmt: skip

        rows = []

        def measure(name: str, provider, fake: Fake, expect_created: int | None) -> tuple[float, dict]:
            fake.call("clear")
            started, cpu = time.perf_counter(), time.process_time()
            result = sync.sync_provider(provider.pk)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            statuses = fake.call("stats")
            if result.status != "ok" or (expect_created is not None and result.stats.created != expect_created):
                raise RuntimeError(f"{name}: {result.status} {result.error} created={result.stats.created}")
            rows.append(
                [
                    name,
                    elapsed,
                    cpu,
                    result.stats.created,
                    sum(statuses.values()),
                    ", ".join(f"{count}×{status}" for status, count in sorted(statuses.items())),
                ]
            )
            return elapsed, statuses, cpu

        gh_first, _, gh_cpu = measure("GitHub, first sync", github, gh, REPOS * ISSUES_PER_REPO)
        etags.memo.clear()  # the re-sync reads ETags and cached bodies from the database, as a fresh worker would
        gh_again, gh_statuses, _ = measure("GitHub, nothing changed", github, gh, 0)
        lin_first, _, lin_cpu = measure("Linear, first sync", linear, lin, LINEAR_ISSUES)
        lin_again, lin_statuses, _ = measure("Linear, nothing changed", linear, lin, 0)
        assert Task.objects.count() == REPOS * ISSUES_PER_REPO + LINEAR_ISSUES

        print(
            table(
                f"Ticket sync — GitHub {REPOS} repos × {ISSUES_PER_REPO} issues, Linear {LINEAR_ISSUES} issues, "
                f"{LATENCY * 1000:.0f} ms per request, database {connection.vendor}",
                ["sync", "seconds", "CPU s (this process)", "tasks created", "requests", "answers"],
                rows,
            )
        )
        total_first = gh_first + lin_first
        print(f"\nload average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(
            table(
                "Targets",
                ["", "measured", "target"],
                [
                    ["first full sync, both providers (s)", total_first, "< 20"],
                    ["  of which GitHub / Linear (s)", f"{gh_first:.1f} / {lin_first:.1f}", ""],
                    ["re-sync, nothing changed: GitHub (s)", gh_again, "< 1"],
                    ["  GitHub requests (per repository)", f"{sum(gh_statuses.values())} ({sum(gh_statuses.values()) / REPOS:g})", "1"],
                    ["  GitHub answers", ", ".join(f"{c}×{s}" for s, c in sorted(gh_statuses.items())), "304"],
                    ["re-sync, nothing changed: Linear (s)", lin_again, "< 1"],
                    ["  Linear requests", sum(lin_statuses.values()), "1"],
                    ["single request: GitHub page of 100 / Linear viewer (ms)", f"{single_gh:.1f} / {single_lin:.1f}", ""],
                    ["first sync per task created: wall / CPU (ms)",
                     f"{total_first * 1000 / TOTAL:.2f} / {(gh_cpu + lin_cpu) * 1000 / TOTAL:.2f}", ""],
                ],
            )
        )  # fmt: skip
    finally:
        gh.stop()
        lin.stop()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
