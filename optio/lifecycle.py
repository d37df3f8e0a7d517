"""The task lifecycle: the one place task state changes, each with its event (DESIGN.md)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from optio import events
from optio.models import Repo, Task, TaskState

S = TaskState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.QUEUED, S.CANCELLED, S.FAILED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.PR_OPENED, S.NEEDS_ATTENTION, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PR_OPENED: frozenset({S.COMPLETED, S.NEEDS_ATTENTION, S.FAILED, S.CANCELLED}),
    S.NEEDS_ATTENTION: frozenset({S.QUEUED, S.RUNNING, S.PR_OPENED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.FAILED: frozenset({S.QUEUED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Fields a transition may set alongside the state.
CHANGEABLE = {"pr_url", "cost_usd", "error", "attention_reason", "pr_status"}


class TransitionError(Exception):
    status = 409


class InvalidTransition(TransitionError):
    """The state machine does not allow `from_state -> to`."""

    def __init__(self, from_state: str, to: str):
        self.from_state, self.to = from_state, to
        self.allowed = sorted(TRANSITIONS.get(from_state, ()))
        allowed = ", ".join(self.allowed) or "none (it is final)"
        super().__init__(f"A task cannot move from {from_state} to {to}; from {from_state} it can move to: {allowed}.")


class TransitionConflict(TransitionError):
    """Another update moved the task first (compare-and-set lost)."""

    def __init__(self, expected: str, actual: str, to: str):
        self.from_state, self.actual, self.to = expected, actual, to
        self.allowed = sorted(TRANSITIONS.get(actual, ()))
        super().__init__(
            f"The task moved from {expected} to {actual} while this change to {to} was being made; reload and retry."
        )


@transaction.atomic
def create_task(
    repo: Repo,
    title: str,
    prompt: str,
    *,
    queue: bool = True,
    created_by=None,
    ticket_source: str = "",
    ticket_external_id: str = "",
    ticket_url: str = "",
) -> Task:
    """Create a task (emits task.created) and, by default, queue it (emits task.queued).

    A second active task for the same ticket raises IntegrityError from the database
    constraint; callers that dedupe (assign, sync) catch it and return the existing task.
    """
    # A queued task is inserted as queued rather than inserted and then moved: nobody can see
    # it in between, so the compare-and-set (and its savepoint) would buy nothing. Ticket sync
    # creates thousands of tasks in one go; this halves the statements per task.
    task = Task.objects.create(
        repo=repo,
        title=title[:500],
        prompt=prompt,
        state=S.QUEUED if queue else S.PENDING,
        created_by=created_by,
        ticket_source=ticket_source,
        ticket_external_id=str(ticket_external_id),
        ticket_url=ticket_url,
    )
    events.publish("task.created", task, data={"state": S.PENDING})
    if queue:
        events.publish("task.queued", task, from_state=S.PENDING)
    return task


@transaction.atomic
def transition(task: Task, to: str, **changes) -> Task:
    """Move `task` to state `to` (compare-and-set on its current state) and emit task.<to>.

    Raises InvalidTransition if the table forbids it, TransitionConflict if another
    update changed the state first.
    """
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise TypeError(f"transition() cannot change {sorted(unknown)}")
    if to not in TRANSITIONS:
        raise InvalidTransition(task.state, to)
    from_state = task.state
    if to not in TRANSITIONS[from_state]:
        raise InvalidTransition(from_state, to)

    now = timezone.now()
    fields = dict(changes, state=to, updated_at=now)
    if "cost_usd" in fields and fields["cost_usd"] is not None:
        fields["cost_usd"] = Decimal(str(fields["cost_usd"]))
    if to == S.RUNNING and task.started_at is None:
        fields["started_at"] = now
    if to in (S.COMPLETED, S.FAILED, S.CANCELLED):
        fields["finished_at"] = now
    if to == S.QUEUED and from_state == S.FAILED:
        fields.setdefault("error", "")
        fields["finished_at"] = None
    if to != S.NEEDS_ATTENTION and from_state == S.NEEDS_ATTENTION:
        fields.setdefault("attention_reason", "")

    updated = Task.objects.filter(pk=task.pk, state=from_state).update(**fields)
    if not updated:
        actual = Task.objects.filter(pk=task.pk).values_list("state", flat=True).first()
        raise TransitionConflict(from_state, actual or "deleted", to)
    for name, value in fields.items():
        setattr(task, name, value)
    events.publish(f"task.{to}", task, from_state=from_state)
    return task


def cancel(task: Task) -> Task:
    return transition(task, S.CANCELLED)


def retry(task: Task) -> Task:
    return transition(task, S.QUEUED)
