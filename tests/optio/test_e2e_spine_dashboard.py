"""The dashboard follows the spine live, in headless Chromium: the Tasks list over /ws/events,
a task's page over /ws/logs/<id>, including a reconnect that resumes with `after`."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import uvicorn
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client

from optio import lifecycle, logs
from optio.models import Repo
from tests.services import require_chromium

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOTS = Path(os.environ.get("OPTIO_SCREENSHOTS", "var/screenshots"))


class ServerThread:
    """uvicorn serving optio.asgi in this process, so it shares the test database and, in
    embedded mode, the in-process channel layer with the code the test calls."""

    def __init__(self, port: int = 0):
        self.port = port

    def start(self) -> ServerThread:
        from optio.asgi import application

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            threading.Event().wait(0.01)
        raise AssertionError("uvicorn did not start")

    def _run(self, sock):
        try:
            asyncio.run(self.server.serve(sockets=[sock]))
        finally:
            # Close the connections of Django's sync thread (consumers' queries) and let the
            # per-request threads' ones be collected, so the test database can be dropped.
            asyncio.run(sync_to_async(connections.close_all)())
            connections.close_all()
            gc.collect()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Backstage:
    """Runs the test's own Django calls in one side thread: Playwright's sync API keeps an
    event loop in the main thread, where Django refuses synchronous database access."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(1)

    def __call__(self, fn, *args, **kwargs):
        return self.pool.submit(fn, *args, **kwargs).result(30)

    def close(self):
        self.pool.submit(connections.close_all).result(10)
        self.pool.shutdown()


def test_tasks_list_and_task_page_follow_the_spine_live():
    chromium = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    user = get_user_model().objects.create_user("ada", is_staff=True)
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    repo = Repo.objects.create(url="https://github.com/acme/webapp")
    task = lifecycle.create_task(repo, "Add email validation", "Validate the signup form")
    lifecycle.create_task(repo, "Fix flaky CI job", "p")
    logs.append(task, [{"content": f"setup step {i}"} for i in range(3)])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    connections.close_all()  # from here on the main thread runs Playwright's loop
    act = Backstage()
    server = ServerThread().start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1200, "height": 800})
            context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # The Tasks list: a state change moves the row's badge; a new task appears.
            page.goto(base + "/")
            expect(page.locator("#live-status")).to_have_text("● live")
            act(lifecycle.transition, task, "running")
            expect(page.locator(f"#task-{task.pk} .cell-state .state")).to_have_text("running")
            created = act(lifecycle.create_task, repo, "Upgrade Django", "p")
            expect(page.locator(f"#task-{created.pk}")).to_be_visible()
            expect(page.locator(f"#task-{created.pk} .cell-state .state")).to_have_text("queued")
            page.screenshot(path=str(SCREENSHOTS / "spine-tasks-list.png"), full_page=True)

            # A task's page: new lines, then a state change with its PR link and history entry.
            page.goto(f"{base}/tasks/{task.pk}/")
            expect(page.locator("#live-status")).to_have_text("● live")
            act(logs.append, task, [{"content": "npm test: 42 passing"}, {"content": "oops", "stream": "stderr"}])
            expect(page.locator("#task-logs .log")).to_have_count(5)
            act(lifecycle.transition, task, "pr_opened", pr_url="https://github.com/acme/webapp/pull/42")
            expect(page.locator("#task-state")).to_have_text("pr_opened")
            expect(page.locator("#task-pr a")).to_have_attribute("href", "https://github.com/acme/webapp/pull/42")
            expect(page.locator("#task-history li")).to_have_count(4)

            # The server goes away; what happens meanwhile arrives once after the reconnect.
            server.stop()
            expect(page.locator("#live-status")).to_have_text("○ reconnecting…")
            act(logs.append, task, [{"content": "written while the page was disconnected"}])
            act(lifecycle.transition, task, "completed", cost_usd="0.35")
            server = ServerThread(server.port).start()
            expect(page.locator("#task-state")).to_have_text("completed", timeout=20_000)
            expect(page.locator("#task-logs .log")).to_have_count(6)
            expect(page.locator("#task-logs .log").last).to_have_text("written while the page was disconnected")
            expect(page.locator("#task-history li")).to_have_count(5)
            expect(page.locator("#task-cost")).to_have_text("$0.35")
            expect(page.locator("#live-status")).to_have_text("● live")
            page.screenshot(path=str(SCREENSHOTS / "spine-task-page.png"), full_page=True)
            browser.close()
            assert errors == []
    finally:
        server.stop()
        act.close()
