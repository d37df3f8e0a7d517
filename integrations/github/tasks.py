"""Celery tasks of the GitHub integration: each takes an id and calls a service."""

from __future__ import annotations

import logging

from celery import shared_task

from integrations.github import etags, writeback

log = logging.getLogger(__name__)


@shared_task(name="github.write_back_assignment", ignore_result=True)
def write_back_assignment(task_id: str) -> None:
    try:
        writeback.announce_assignment(task_id)
    except Exception:  # never fatal: the task is queued either way, and the failure is logged here
        log.exception("GitHub write-back for task %s failed", task_id)


@shared_task(name="github.prune_etag_cache", ignore_result=True)
def prune_etag_cache() -> None:
    etags.prune()
