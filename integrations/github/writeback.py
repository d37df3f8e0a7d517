"""Telling the GitHub issue that Optio took it: an `optio` label and a comment linking the task.

Write-back never decides a task's fate: a failure is logged on the task and stored in
`Task.writeback_error`, and the task carries on.
"""

from __future__ import annotations

import logging

from integrations.github import client
from optio import logs
from optio.models import Task

log = logging.getLogger(__name__)

LABEL = "optio"


def comment_body(task: Task) -> str:
    return (
        f"Optio is working on this issue as task **{task.title}**.\n\n"
        f"Follow it here: {task.page_url}\n\n"
        "_This comment was posted by Optio because the issue was assigned to it._"
    )


def announce_assignment(task_id: str) -> list[str]:
    """Label the task's issue and comment on it. Returns the failures (also logged on the task)."""
    task = Task.objects.select_related("repo").filter(pk=task_id).first()
    if task is None or task.ticket_source != "github" or not task.repo.writeback_enabled:
        return []
    repo, number = task.repo, int(task.ticket_external_id)
    steps = [
        (f"add the `{LABEL}` label", lambda: client.add_labels(repo, number, [LABEL])),
        ("comment with a link to the task", lambda: client.create_comment(repo, number, comment_body(task))),
    ]
    failures = []
    for what, call in steps:
        try:
            call()
        except client.GitHubError as exc:
            failures.append(f"Could not {what} on {repo.full_name}#{number}: {exc}")
        except Exception as exc:  # write-back is never fatal, whatever went wrong
            log.exception("GitHub write-back for task %s failed", task.pk)
            failures.append(f"Could not {what} on {repo.full_name}#{number}: unexpected {exc.__class__.__name__}.")
    if failures:
        message = "GitHub write-back failed. " + " ".join(failures)
        logs.log(task, message, type="writeback", step="assign", ok=False)
        # An update, not save(): the task's state may be moving concurrently and must not be overwritten.
        Task.objects.filter(pk=task.pk).update(writeback_error=message)
    else:
        logs.log(task, f"Labelled {repo.full_name}#{number} `{LABEL}` and commented with a link to this task.",
                 type="writeback", step="assign", ok=True)  # fmt: skip
    return failures
