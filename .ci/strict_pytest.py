"""pytest plugin for CI (`-p strict_pytest`): a skipped test fails the run.

Locally a test skips when a service it needs is missing; in CI every test must run, so a
skip means CI is not testing what it claims to.
"""

from __future__ import annotations

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config) -> None:
    if _skipped:
        terminalreporter.section("CI: skipped tests fail the run", sep="=", red=True, bold=True)
        for nodeid in _skipped:
            terminalreporter.line(f"skipped in CI: {nodeid}", red=True)
