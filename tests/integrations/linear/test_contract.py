"""Every query Optio sends to Linear validates against the schema Linear publishes.

The schema is reference data outside the repository (`../shared/data/linear/schema.graphql`,
present in CI beside the clone). Only these tests skip when it is absent.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLObjectType,
    OperationDefinitionNode,
    build_schema,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from integrations.linear import client
from optio.models import Repo
from tests.fakes.linear import SCHEMA as FAKE_SCHEMA
from tickets import services, sync

ROOT = Path(__file__).resolve().parents[3]
CANDIDATES = [
    ROOT / ".." / "shared" / "data" / "linear" / "schema.graphql",
    # a git worktree one level further down (…/wt/<name>) still finds the shared copy
    ROOT / ".." / ".." / "shared" / "data" / "linear" / "schema.graphql",
]


@lru_cache(maxsize=1)
def linear_schema():
    for path in CANDIDATES:
        if path.exists():
            return build_schema(path.read_text())
    pytest.skip("Linear's schema.graphql is not beside the clone (../shared/data/linear/)")


def _check(schema, query: str, variables: dict) -> list[str]:
    document = parse(query)
    problems = [e.message for e in validate(schema, document)]
    if problems:
        return problems
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    coerced = get_variable_values(schema, operation.variable_definitions or [], variables)
    return [e.message for e in coerced] if isinstance(coerced, list) else []


@pytest.mark.django_db
def test_every_query_the_linear_source_sends_validates_against_linears_schema(fake_linear):
    schema = linear_schema()
    Repo.objects.create(url="https://github.com/acme/webapp")
    team = fake_linear.add_team("ENG")
    project = fake_linear.add_project("Web")
    for n in range(60):
        fake_linear.add_issue(team, f"Issue {n}", labels=["optio"], project=project, comments=[("Ann Lee", "hi")])
    configs = [
        {"apiKey": "lin_api_test_key", "teamId": team.id, "repoUrl": "https://github.com/acme/webapp"},
        {"apiKey": "lin_api_test_key", "teamId": "ENG", "projectId": project.id, "labels": ["optio", "bug"]},
        {"apiKey": "lin_api_test_key", "projectId": project.slugId, "labels": ["optio"]},
    ]
    for config in configs:
        provider = services.create_provider("linear", config).provider
        sync.sync_provider(provider.pk)
        sync.sync_provider(provider.pk)  # incremental: adds the updatedAt comparator
        sync.preview(provider)
    sent = [(r.query, r.variables) for r in fake_linear.requests]
    assert len(sent) >= 9
    for query, variables in sent:
        assert _check(schema, query, variables) == [], query


def test_every_query_in_the_client_validates_against_linears_schema():
    schema = linear_schema()
    for name, query in client.QUERIES.items():
        assert [e.message for e in validate(schema, parse(query))] == [], name


def test_the_fakes_schema_is_a_faithful_subset_of_linears():
    real = linear_schema()
    problems = []
    for name, fake_type in FAKE_SCHEMA.type_map.items():
        if name.startswith("__"):
            continue
        real_type = real.type_map.get(name)
        if real_type is None:
            problems.append(f"type {name} is not in Linear's schema")
            continue
        if isinstance(fake_type, GraphQLObjectType | GraphQLInputObjectType):
            for field_name, field in fake_type.fields.items():
                real_field = real_type.fields.get(field_name)
                if real_field is None:
                    problems.append(f"{name}.{field_name} is not in Linear's schema")
                    continue
                if str(real_field.type) != str(field.type):
                    problems.append(f"{name}.{field_name}: fake {field.type}, Linear {real_field.type}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    real_arg = real_field.args.get(arg_name)
                    if real_arg is None or str(real_arg.type) != str(arg.type):
                        problems.append(f"{name}.{field_name}({arg_name}): fake {arg.type}")
        if isinstance(fake_type, GraphQLEnumType):
            problems += [f"{name}.{v}" for v in fake_type.values if v not in real_type.values]
    assert problems == []
