"""Write-back to Linear: a comment on the issue, and moving it along the team's workflow.

Uses the Linear client (`integrations.linear.client.execute`). The API key is the one of the
Linear ticket provider the task most likely came from (same team key first), then the
`LINEAR_API_KEY` secret. https://linear.app/developers/graphql
"""

from __future__ import annotations

from integrations.linear import client
from optio import secrets
from optio.models import Task

ISSUE_WORKFLOW_QUERY = """query OptioIssueWorkflow($id: String!) {
  issue(id: $id) {
    id
    identifier
    state { id name type }
    team { id key states(first: 100) { nodes { id name type position } } }
  }
}"""

COMMENT_CREATE = """mutation OptioCommentCreate($issueId: String!, $body: String!) {
  commentCreate(input: {issueId: $issueId, body: $body}) { success comment { id } }
}"""

ISSUE_MOVE = """mutation OptioIssueMove($id: String!, $stateId: String!) {
  issueUpdate(id: $id, input: {stateId: $stateId}) { success issue { id state { id name type } } }
}"""

QUERIES = {
    "OptioIssueWorkflow": ISSUE_WORKFLOW_QUERY,
    "OptioCommentCreate": COMMENT_CREATE,
    "OptioIssueMove": ISSUE_MOVE,
}

# Only move forward: an issue someone already moved further along is left where it is.
MOVE_FROM = {
    "started": {"triage", "backlog", "unstarted"},
    "completed": {"triage", "backlog", "unstarted", "started"},
}
KEY_SECRET = "LINEAR_API_KEY"


class NoApiKey(client.LinearError):
    kind = "missing_key"


def _api_keys(task: Task) -> list[str]:
    from tickets.models import TicketProvider

    team_key = task.ticket_external_id.split("-")[0].upper()
    providers = list(TicketProvider.objects.filter(source="linear").order_by("-enabled", "pk"))
    # The provider whose team is the issue's team is the one the task came from.
    providers.sort(key=lambda p: str((p.config or {}).get("teamId", "")).upper() != team_key)
    keys = []
    for provider in providers:
        key = provider.get_credentials().get("apiKey")
        if key and key not in keys:
            keys.append(key)
    fallback = secrets.get_value(KEY_SECRET, task.repo)
    if fallback and fallback not in keys:
        keys.append(fallback)
    return keys


def _issue(task: Task) -> tuple[str, dict]:
    """(api key, issue with its team's states); tries each key until one can see the issue."""
    keys = _api_keys(task)
    if not keys:
        raise NoApiKey(
            f"Optio has no Linear API key for {task.ticket_external_id}: add a Linear ticket provider, or "
            f"set the {KEY_SECRET} secret."
        )
    last: client.LinearError | None = None
    for key in keys:
        try:
            data = client.execute(key, ISSUE_WORKFLOW_QUERY, {"id": task.ticket_external_id})
        except (client.LinearQueryError, client.LinearAuthError, client.LinearForbidden) as exc:
            last = exc  # this key cannot see the issue; another one may
            continue
        return key, data["issue"]
    raise last  # type: ignore[misc]


def comment(task: Task, body: str) -> str:
    """https://linear.app/developers/graphql (commentCreate). Returns what was done, for the task log."""
    key, issue = _issue(task)
    client.execute(key, COMMENT_CREATE, {"issueId": issue["id"], "body": body})
    return f"Commented on {issue['identifier']}."


def move(task: Task, state_type: str) -> str:
    """Move the issue to its team's first state of `state_type` (by position), unless it is past it."""
    key, issue = _issue(task)
    current = issue.get("state") or {}
    if current.get("type") not in MOVE_FROM[state_type]:
        return f"{issue['identifier']} is already {current.get('name')}; left as it is."
    states = sorted(
        (s for s in ((issue.get("team") or {}).get("states") or {}).get("nodes") or [] if s.get("type") == state_type),
        key=lambda s: s.get("position") or 0,
    )
    if not states:
        raise client.LinearQueryError(f"The team of {issue['identifier']} has no {state_type} workflow state.")
    target = states[0]
    client.execute(key, ISSUE_MOVE, {"id": issue["id"], "stateId": target["id"]})
    return f"Moved {issue['identifier']} to {target['name']}."
