"""A real local Linear GraphQL endpoint for tests and benchmarks.

Requests are parsed, validated and executed by graphql-core against `SCHEMA_SDL`, a subset of
the schema Linear publishes (same type, field and argument names and types; a contract test
checks that against `../shared/data/linear/schema.graphql`). Data lives in memory.

What it does like Linear (https://linear.app/developers):
- `Authorization: <personal API key>` with no `Bearer` prefix; a missing, unknown or
  Bearer-prefixed key gets Linear's authentication error (HTTP 401,
  `extensions.code` AUTHENTICATION_ERROR, `type` "authentication error");
- `issues(filter:, first:, after:, orderBy:)` with `IssueFilter` (and/or, team, project,
  state, labels, assignee, updatedAt/createdAt comparators) and cursor pagination
  (`pageInfo { hasNextPage endCursor }`, opaque cursors, `first` capped at 250);
- rate limiting as Linear documents it: HTTP 400 with `extensions.code` RATELIMITED and
  `X-RateLimit-Requests-Limit/-Remaining/-Reset` (reset in epoch milliseconds) headers;
- a query that does not validate gets HTTP 400 with GRAPHQL_VALIDATION_FAILED.

Test controls: `latency` seconds per request, `fail(status=..., after=..., times=...)` to
inject 5xx or rate-limit answers, and `requests` (every request received: headers, query,
variables) for assertions.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from graphql import GraphQLError, build_schema, graphql_sync, parse, validate

SCHEMA_SDL = """
scalar DateTime
scalar DateTimeOrDuration

enum PaginationOrderBy { createdAt updatedAt }

type PageInfo {
  startCursor: String
  endCursor: String
  hasPreviousPage: Boolean!
  hasNextPage: Boolean!
}

type Organization { id: ID! name: String! urlKey: String! }

type User {
  id: ID!
  name: String!
  displayName: String!
  email: String!
  active: Boolean!
}

type Team { id: ID! key: String! name: String! }

type Project { id: ID! name: String! slugId: String! url: String! }

type WorkflowState { id: ID! name: String! type: String! position: Float! color: String! team: Team! }

type IssueLabel { id: ID! name: String! color: String! }

type IssueLabelConnection { nodes: [IssueLabel!]! pageInfo: PageInfo! }

type Comment { id: ID! body: String! createdAt: DateTime! updatedAt: DateTime! user: User }

type CommentConnection { nodes: [Comment!]! pageInfo: PageInfo! }

type Issue {
  id: ID!
  identifier: String!
  number: Float!
  title: String!
  description: String
  url: String!
  priority: Float!
  createdAt: DateTime!
  updatedAt: DateTime!
  state: WorkflowState!
  team: Team!
  project: Project
  assignee: User
  labelIds: [String!]!
  labels(after: String, before: String, filter: IssueLabelFilter, first: Int, includeArchived: Boolean,
         last: Int, orderBy: PaginationOrderBy): IssueLabelConnection!
  comments(after: String, before: String, filter: CommentFilter, first: Int, includeArchived: Boolean,
           last: Int, orderBy: PaginationOrderBy): CommentConnection!
}

type IssueEdge { node: Issue! cursor: String! }

type IssueConnection { edges: [IssueEdge!]! nodes: [Issue!]! pageInfo: PageInfo! }

input StringComparator {
  eq: String neq: String in: [String!] nin: [String!]
  eqIgnoreCase: String neqIgnoreCase: String
  contains: String containsIgnoreCase: String notContains: String
  startsWith: String endsWith: String
}

input IDComparator { eq: ID neq: ID in: [ID!] nin: [ID!] }

input DateComparator {
  eq: DateTimeOrDuration neq: DateTimeOrDuration
  gt: DateTimeOrDuration gte: DateTimeOrDuration lt: DateTimeOrDuration lte: DateTimeOrDuration
  in: [DateTimeOrDuration!] nin: [DateTimeOrDuration!]
}

input TeamFilter {
  id: IDComparator key: StringComparator name: StringComparator
  and: [TeamFilter!] or: [TeamFilter!]
}

input NullableProjectFilter {
  id: IDComparator name: StringComparator slugId: StringComparator null: Boolean
  and: [NullableProjectFilter!] or: [NullableProjectFilter!]
}

input NullableUserFilter {
  id: IDComparator name: StringComparator displayName: StringComparator email: StringComparator null: Boolean
  and: [NullableUserFilter!] or: [NullableUserFilter!]
}

input WorkflowStateFilter {
  id: IDComparator name: StringComparator type: StringComparator
  and: [WorkflowStateFilter!] or: [WorkflowStateFilter!]
}

input IssueLabelFilter {
  id: IDComparator name: StringComparator
  and: [IssueLabelFilter!] or: [IssueLabelFilter!]
}

input IssueLabelCollectionFilter {
  id: IDComparator name: StringComparator some: IssueLabelFilter every: IssueLabelFilter null: Boolean
  and: [IssueLabelCollectionFilter!] or: [IssueLabelCollectionFilter!]
}

input CommentFilter { id: IDComparator body: StringComparator and: [CommentFilter!] or: [CommentFilter!] }

input IssueFilter {
  id: IssueIDComparator
  title: StringComparator
  createdAt: DateComparator
  updatedAt: DateComparator
  team: TeamFilter
  project: NullableProjectFilter
  assignee: NullableUserFilter
  state: WorkflowStateFilter
  labels: IssueLabelCollectionFilter
  and: [IssueFilter!]
  or: [IssueFilter!]
}

input IssueIDComparator { eq: ID neq: ID in: [ID!] nin: [ID!] }

type Query {
  issues(after: String, before: String, filter: IssueFilter, first: Int, includeArchived: Boolean, last: Int,
         orderBy: PaginationOrderBy): IssueConnection!
  issue(id: String!): Issue!
  viewer: User!
  organization: Organization!
}
"""


# Write-back (PR watcher): a team's workflow states, comments and state changes. Same names and
# types as Linear's schema (https://linear.app/developers/graphql); resolvers are at the end.
SCHEMA_SDL += """
type WorkflowStateEdge { node: WorkflowState! cursor: String! }

type WorkflowStateConnection { edges: [WorkflowStateEdge!]! nodes: [WorkflowState!]! pageInfo: PageInfo! }

extend type Team {
  states(after: String, before: String, filter: WorkflowStateFilter, first: Int, includeArchived: Boolean,
         last: Int, orderBy: PaginationOrderBy): WorkflowStateConnection!
}

input CommentCreateInput { body: String issueId: String }

input IssueUpdateInput { stateId: String title: String }

type CommentPayload { comment: Comment! lastSyncId: Float! success: Boolean! }

type IssuePayload { issue: Issue lastSyncId: Float! success: Boolean! }

type Mutation {
  commentCreate(input: CommentCreateInput!): CommentPayload!
  issueUpdate(id: String!, input: IssueUpdateInput!): IssuePayload!
}
"""

SCHEMA = build_schema(SCHEMA_SDL)
MAX_PAGE = 250
DEFAULT_PAGE = 50
RATE_LIMIT = 2500  # requests per hour for an API key (Linear's documented figure)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Clock:
    """Strictly increasing millisecond timestamps, so every update is ordered."""

    def __init__(self):
        self._last = datetime(2000, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            now = datetime.now(UTC)
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            if now <= self._last:
                now = self._last + timedelta(milliseconds=1)
            self._last = now
            return now


@dataclass
class Team:
    id: str
    key: str
    name: str
    states: dict[str, WorkflowState] = field(default_factory=dict)


@dataclass
class WorkflowState:
    id: str
    name: str
    type: str
    position: float
    team: Team
    color: str = "#bec2c8"


@dataclass
class Project:
    id: str
    name: str
    slugId: str
    url: str


@dataclass
class User:
    id: str
    name: str
    displayName: str
    email: str
    active: bool = True


@dataclass
class Label:
    id: str
    name: str
    color: str = "#5e6ad2"


@dataclass
class Comment:
    id: str
    body: str
    createdAt: str
    updatedAt: str
    user: User | None


def _connection(items: list) -> dict:
    return {
        "nodes": items,
        "pageInfo": {"startCursor": None, "endCursor": None, "hasPreviousPage": False, "hasNextPage": False},
    }


@dataclass
class Issue:
    id: str
    identifier: str
    number: float
    title: str
    description: str | None
    url: str
    createdAt: str
    updatedAt: str
    state: WorkflowState
    team: Team
    project: Project | None = None
    assignee: User | None = None
    label_list: list[Label] = field(default_factory=list)
    comment_list: list[Comment] = field(default_factory=list)
    priority: float = 0.0

    @property
    def labelIds(self) -> list[str]:
        return [label.id for label in self.label_list]

    def labels(self, info, first: int | None = None, **_) -> dict:
        return _connection(self.label_list[: first or DEFAULT_PAGE])

    def comments(self, info, first: int | None = None, **_) -> dict:
        return _connection(self.comment_list[: first or DEFAULT_PAGE])


# --- filters: the comparator semantics Linear documents (https://linear.app/developers/filtering) ---


def _compare(value, comparator: dict, *, is_time: bool = False) -> bool:
    def norm(v):
        return parse_time(v) if is_time and isinstance(v, str) else v

    value = norm(value)
    for op, arg in comparator.items():
        if arg is None:
            continue
        arg = [norm(a) for a in arg] if op in ("in", "nin") else norm(arg)
        ok = {
            "eq": lambda a=arg: value == a,
            "neq": lambda a=arg: value != a,
            "in": lambda a=arg: value in a,
            "nin": lambda a=arg: value not in a,
            "gt": lambda a=arg: value is not None and value > a,
            "gte": lambda a=arg: value is not None and value >= a,
            "lt": lambda a=arg: value is not None and value < a,
            "lte": lambda a=arg: value is not None and value <= a,
            "eqIgnoreCase": lambda a=arg: (value or "").lower() == a.lower(),
            "neqIgnoreCase": lambda a=arg: (value or "").lower() != a.lower(),
            "contains": lambda a=arg: a in (value or ""),
            "containsIgnoreCase": lambda a=arg: a.lower() in (value or "").lower(),
            "notContains": lambda a=arg: a not in (value or ""),
            "startsWith": lambda a=arg: (value or "").startswith(a),
            "endsWith": lambda a=arg: (value or "").endswith(a),
        }.get(op)
        if ok is None:
            raise GraphQLError(f"The fake does not implement the comparator {op!r}.")
        if not ok():
            return False
    return True


def _match_object(obj, flt: dict | None, fields: dict) -> bool:
    """Generic entity filter: `fields` maps a filter key to (getter, is_time)."""
    if not flt:
        return True
    if obj is None:
        return flt.get("null") is True
    for key, sub in flt.items():
        if sub is None:
            continue
        if key == "null":
            if sub is True:
                return False
            continue
        if key == "and":
            if not all(_match_object(obj, f, fields) for f in sub):
                return False
            continue
        if key == "or":
            if not any(_match_object(obj, f, fields) for f in sub):
                return False
            continue
        if key not in fields:
            raise GraphQLError(f"The fake does not implement filtering on {key!r}.")
        getter, kind = fields[key]
        if kind == "nested":
            if not getter(obj, sub):
                return False
        elif not _compare(getter(obj), sub, is_time=kind == "time"):
            return False
    return True


_SIMPLE = {"id": (lambda o: o.id, "plain"), "name": (lambda o: o.name, "plain")}
TEAM_FIELDS = dict(_SIMPLE, key=(lambda o: o.key, "plain"))
PROJECT_FIELDS = dict(_SIMPLE, slugId=(lambda o: o.slugId, "plain"))
USER_FIELDS = dict(_SIMPLE, displayName=(lambda o: o.displayName, "plain"), email=(lambda o: o.email, "plain"))
STATE_FIELDS = dict(_SIMPLE, type=(lambda o: o.type, "plain"))
LABEL_FIELDS = dict(_SIMPLE)


def _labels_match(issue: Issue, flt: dict) -> bool:
    labels = issue.label_list
    for key, sub in flt.items():
        if sub is None:
            continue
        if key == "some":
            if not any(_match_object(label, sub, LABEL_FIELDS) for label in labels):
                return False
        elif key == "every":
            if not all(_match_object(label, sub, LABEL_FIELDS) for label in labels):
                return False
        elif key == "null":
            if bool(sub) != (not labels):
                return False
        elif key == "and":
            if not all(_labels_match(issue, f) for f in sub):
                return False
        elif key == "or":
            if not any(_labels_match(issue, f) for f in sub):
                return False
        elif key in ("id", "name"):
            # A comparator straight on the collection matches when some label matches.
            if not any(_match_object(label, {key: sub}, LABEL_FIELDS) for label in labels):
                return False
        else:
            raise GraphQLError(f"The fake does not implement label filtering on {key!r}.")
    return True


ISSUE_FIELDS = {
    "id": (lambda o: o.id, "plain"),
    "title": (lambda o: o.title, "plain"),
    "createdAt": (lambda o: o.createdAt, "time"),
    "updatedAt": (lambda o: o.updatedAt, "time"),
    "team": (lambda o, f: _match_object(o.team, f, TEAM_FIELDS), "nested"),
    "project": (lambda o, f: _match_object(o.project, f, PROJECT_FIELDS), "nested"),
    "assignee": (lambda o, f: _match_object(o.assignee, f, USER_FIELDS), "nested"),
    "state": (lambda o, f: _match_object(o.state, f, STATE_FIELDS), "nested"),
    "labels": (lambda o, f: _labels_match(o, f), "nested"),
}


def _cursor(issue: Issue, order: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([getattr(issue, order), issue.id]).encode()).decode()


def _decode_cursor(raw: str) -> tuple[str, str]:
    try:
        value, ident = json.loads(base64.urlsafe_b64decode(raw.encode()))
        return value, ident
    except Exception:
        raise GraphQLError("Invalid cursor: the after argument is not a cursor this API returned.") from None


@dataclass
class Fault:
    status: int
    kind: str  # "error" or "ratelimited"
    after: int
    times: int


@dataclass
class RecordedRequest:
    headers: dict[str, str]
    query: str
    variables: dict
    operation_name: str | None
    status: int = 0  # what the fake answered


class FakeLinear:
    """Run with `with FakeLinear() as linear:`; point LINEAR_API_URL at `linear.url`."""

    def __init__(self, api_keys: tuple[str, ...] = ("lin_api_test_key",), latency: float = 0.0):
        self.api_keys = set(api_keys)
        self.latency = latency
        self.clock = _Clock()
        self.teams: dict[str, Team] = {}
        self.projects: dict[str, Project] = {}
        self.users: dict[str, User] = {}
        self.issues: dict[str, Issue] = {}
        self.requests: list[RecordedRequest] = []
        self.viewer = self.add_user("Test Viewer")
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/graphql"

    def start(self) -> FakeLinear:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, headers, body = fake.handle({k.lower(): v for k, v in self.headers.items()}, raw)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-linear", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeLinear:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- data ---

    def add_user(self, name: str, email: str | None = None) -> User:
        user = User(str(uuid.uuid4()), name, name.split()[0].lower(), email or f"{name.split()[0].lower()}@example.com")
        self.users[user.id] = user
        return user

    def add_team(self, key: str, name: str | None = None) -> Team:
        team = Team(str(uuid.uuid4()), key, name or key.title())
        for pos, (state_name, state_type) in enumerate(
            [
                ("Triage", "triage"),
                ("Backlog", "backlog"),
                ("Todo", "unstarted"),
                ("In Progress", "started"),
                ("Done", "completed"),
                ("Canceled", "canceled"),
            ]
        ):
            team.states[state_type] = WorkflowState(str(uuid.uuid4()), state_name, state_type, float(pos), team)
        self.teams[team.id] = team
        return team

    def add_project(self, name: str) -> Project:
        slug = uuid.uuid4().hex[:12]
        project = Project(str(uuid.uuid4()), name, slug, f"https://linear.app/acme/project/{slug}")
        self.projects[project.id] = project
        return project

    def add_issue(
        self,
        team: Team,
        title: str,
        *,
        description: str | None = "",
        state: str = "unstarted",
        labels: tuple[str, ...] | list[str] = (),
        project: Project | None = None,
        assignee: User | None = None,
        comments: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
    ) -> Issue:
        """`comments` are (author name, body) pairs."""
        with self._lock:
            number = 1 + sum(1 for i in self.issues.values() if i.team is team)
            now = iso(self.clock.now())
            identifier = f"{team.key}-{number}"
            issue = Issue(
                id=str(uuid.uuid4()),
                identifier=identifier,
                number=float(number),
                title=title,
                description=description,
                url=f"https://linear.app/acme/issue/{identifier.lower()}",
                createdAt=now,
                updatedAt=now,
                state=team.states[state],
                team=team,
                project=project,
                assignee=assignee,
                label_list=[Label(str(uuid.uuid5(uuid.NAMESPACE_URL, name)), name) for name in labels],
                comment_list=[
                    Comment(str(uuid.uuid4()), body, now, now, self._user_named(author)) for author, body in comments
                ],
            )
            self.issues[issue.id] = issue
            return issue

    def _user_named(self, name: str) -> User:
        for user in self.users.values():
            if user.name == name:
                return user
        return self.add_user(name)

    def update_issue(self, issue: Issue, *, state: str | None = None, labels=None, title: str | None = None) -> Issue:
        """Change an issue the way a Linear user would; its updatedAt moves forward."""
        with self._lock:
            if state is not None:
                issue.state = issue.team.states[state]
            if labels is not None:
                issue.label_list = [Label(str(uuid.uuid5(uuid.NAMESPACE_URL, n)), n) for n in labels]
            if title is not None:
                issue.title = title
            issue.updatedAt = iso(self.clock.now())
            return issue

    # --- faults ---

    def fail(self, status: int = 500, *, after: int = 0, times: int = 1, kind: str = "error") -> None:
        """Let `after` requests through, then answer the next `times` with a failure.

        kind "error": HTTP `status` with an INTERNAL_SERVER_ERROR body; kind "ratelimited":
        Linear's RATELIMITED answer (HTTP 400 unless `status` says otherwise).
        """
        with self._lock:
            self._faults.append(Fault(status, kind, after, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.after > 0:
                    fault.after -= 1
                    return None
                if fault.times > 0:
                    fault.times -= 1
                    return fault
            return None

    # --- HTTP ---

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        reset_ms = int((time.time() + 3600) * 1000)
        return {
            "X-RateLimit-Requests-Limit": str(RATE_LIMIT),
            "X-RateLimit-Requests-Remaining": str(max(0, remaining)),
            "X-RateLimit-Requests-Reset": str(reset_ms),
        }

    def handle(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], dict]:
        if self.latency:
            time.sleep(self.latency)
        record = RecordedRequest(headers, "", {}, None)
        with self._lock:
            self.requests.append(record)
            count = len(self.requests)
        status, out_headers, body = self._answer(record, count, raw)
        record.status = status
        return status, out_headers, body

    def _answer(self, record: RecordedRequest, count: int, raw: bytes) -> tuple[int, dict[str, str], dict]:
        headers = record.headers
        try:
            body = json.loads(raw or b"{}")
            query = body.get("query") or ""
            variables = body.get("variables") or {}
            operation = body.get("operationName")
        except (ValueError, AttributeError):
            return 400, {}, {"errors": [{"message": "Body is not JSON", "extensions": {"code": "BAD_USER_INPUT"}}]}
        record.query, record.variables, record.operation_name = query, variables, operation
        rate = self._rate_headers(RATE_LIMIT - count)

        key = headers.get("authorization", "")
        if key not in self.api_keys:
            # Linear's answer to a missing or wrong key (and to a personal key sent as "Bearer <key>").
            return (
                401,
                {},
                {
                    "errors": [
                        {
                            "message": "Authentication required, not authenticated",
                            "extensions": {
                                "type": "authentication error",
                                "code": "AUTHENTICATION_ERROR",
                                "statusCode": 401,
                                "userPresentableMessage": "You need to authenticate to access this operation.",
                            },
                        }
                    ]
                },
            )

        fault = self._take_fault()
        if fault is not None and fault.kind == "ratelimited":
            rate = self._rate_headers(0)
            return (
                fault.status if fault.status != 500 else 400,
                rate,
                {
                    "errors": [
                        {
                            "message": f"Rate limit exceeded. Only {RATE_LIMIT} requests are allowed per 1 hour.",
                            "extensions": {
                                "type": "ratelimited",
                                "code": "RATELIMITED",
                                "statusCode": 429,
                                "userPresentableMessage": "You have exceeded the rate limit. Please try again later.",
                            },
                        }
                    ]
                },
            )
        if fault is not None:
            return (
                fault.status,
                rate,
                {"errors": [{"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]},
            )

        try:
            document = parse(query)
        except GraphQLError as exc:
            return 400, rate, {"errors": [_validation_error(exc)]}
        problems = validate(SCHEMA, document)
        if problems:
            return 400, rate, {"errors": [_validation_error(p) for p in problems]}
        with self._lock:
            result = graphql_sync(
                SCHEMA, query, root_value=_Root(self), variable_values=variables, operation_name=operation
            )
        out: dict = {"data": result.data}
        if result.errors:
            out["errors"] = [
                dict(e.formatted, extensions={"code": "INVALID_INPUT", "type": "invalid input"}) for e in result.errors
            ]
            return 400 if result.data is None else 200, rate, out
        return 200, rate, out


def _validation_error(err: GraphQLError) -> dict:
    return dict(
        err.formatted,
        extensions={
            "code": "GRAPHQL_VALIDATION_FAILED",
            "type": "graphql error",
            "userPresentableMessage": err.message,
        },
    )


class _Root:
    def __init__(self, fake: FakeLinear):
        self.fake = fake

    def viewer(self, info) -> User:
        return self.fake.viewer

    def organization(self, info) -> dict:
        return {"id": "org-1", "name": "Acme", "urlKey": "acme"}

    def issue(self, info, id: str) -> Issue:
        for issue in self.fake.issues.values():
            if id in (issue.id, issue.identifier):
                return issue
        raise GraphQLError("Entity not found: Issue")

    def issues(self, info, filter=None, first=None, after=None, orderBy="createdAt", before=None, last=None, **_):
        if before is not None or last is not None:
            raise GraphQLError("The fake only paginates forwards (first/after).")
        first = DEFAULT_PAGE if first is None else first
        if first < 0 or first > MAX_PAGE:
            raise GraphQLError(f"first must be between 0 and {MAX_PAGE}.")
        order = orderBy or "createdAt"
        matching = [i for i in self.fake.issues.values() if _match_object(i, filter, ISSUE_FIELDS)]
        # Newest first, as Linear orders by createdAt/updatedAt; ties broken by id so cursors are stable.
        matching.sort(key=lambda i: (getattr(i, order), i.id), reverse=True)
        if after:
            value, ident = _decode_cursor(after)
            matching = [i for i in matching if (getattr(i, order), i.id) < (value, ident)]
        page = matching[:first]
        has_next = len(matching) > first
        end = _cursor(page[-1], order) if page else None
        start = _cursor(page[0], order) if page else None
        return {
            "nodes": page,
            "edges": [{"node": i, "cursor": _cursor(i, order)} for i in page],
            "pageInfo": {
                "startCursor": start,
                "endCursor": end,
                "hasPreviousPage": bool(after),
                "hasNextPage": has_next,
            },
        }


def seed(fake: FakeLinear, team: Team, count: int, *, labels=(), start: int = 0) -> list[Issue]:
    """`count` open issues titled "Issue N" (benchmarks and paging tests)."""
    return [
        fake.add_issue(team, f"Issue {n}", description=f"Body of issue {n}", labels=labels)
        for n in itertools.islice(itertools.count(start), count)
    ]


# --- write-back resolvers: Team.states, commentCreate, issueUpdate ---


def _find_issue(fake: FakeLinear, ident: str) -> Issue:
    for issue in fake.issues.values():
        if ident in (issue.id, issue.identifier):
            return issue
    raise GraphQLError("Entity not found: Issue")


def _team_states(team: Team, info, filter=None, first=None, **_) -> dict:
    states = sorted(team.states.values(), key=lambda s: s.position)
    states = [s for s in states if _match_object(s, filter, STATE_FIELDS)][: first or DEFAULT_PAGE]
    return dict(_connection(states), edges=[{"node": s, "cursor": s.id} for s in states])


def _comment_create(root, info, input: dict) -> dict:
    fake: FakeLinear = root.fake
    if not input.get("issueId") or not input.get("body"):
        raise GraphQLError("Argument Validation Error: issueId and body are required.")
    issue = _find_issue(fake, input["issueId"])
    now = iso(fake.clock.now())
    comment = Comment(str(uuid.uuid4()), input["body"], now, now, fake.viewer)
    issue.comment_list.append(comment)
    issue.updatedAt = now
    return {"comment": comment, "lastSyncId": float(len(fake.requests)), "success": True}


def _issue_update(root, info, id: str, input: dict) -> dict:
    fake: FakeLinear = root.fake
    issue = _find_issue(fake, id)
    if input.get("stateId"):
        state = next((s for s in issue.team.states.values() if s.id == input["stateId"]), None)
        if state is None:
            raise GraphQLError("Entity not found: WorkflowState")
        issue.state = state
    if input.get("title"):
        issue.title = input["title"]
    issue.updatedAt = iso(fake.clock.now())
    return {"issue": issue, "lastSyncId": float(len(fake.requests)), "success": True}


SCHEMA.type_map["Team"].fields["states"].resolve = _team_states
SCHEMA.mutation_type.fields["commentCreate"].resolve = _comment_create
SCHEMA.mutation_type.fields["issueUpdate"].resolve = _issue_update


def add_workflow_state(team: Team, name: str, type: str, position: float) -> WorkflowState:
    """Another state of `type` (a team can have several `started` states; `add_team` makes one of each)."""
    state = WorkflowState(str(uuid.uuid4()), name, type, position, team)
    team.states[f"{type}:{name}"] = state
    return state


@pytest.fixture
def fake_linear(settings):
    """A running FakeLinear with settings.LINEAR_API_URL pointing at it (import it into a conftest)."""
    with FakeLinear() as fake:
        settings.LINEAR_API_URL = fake.url
        yield fake
