"""The write-back's Linear operations validate against the schema Linear publishes (and the fake's)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from graphql import build_schema, parse, validate

from integrations.prwatch import linear_writeback
from tests.fakes.linear import SCHEMA as FAKE_SCHEMA

ROOT = Path(__file__).resolve().parents[3]
CANDIDATES = [
    ROOT / ".." / "shared" / "data" / "linear" / "schema.graphql",
    ROOT / ".." / ".." / "shared" / "data" / "linear" / "schema.graphql",  # from a worktree under …/wt/<name>
]


@lru_cache(maxsize=1)  # building Linear's 50,000-line schema takes seconds
def linear_schema():
    for path in CANDIDATES:
        if path.exists():
            return build_schema(path.read_text())
    pytest.skip("Linear's schema.graphql is not beside the clone (../shared/data/linear/)")


@pytest.mark.parametrize("name", sorted(linear_writeback.QUERIES))
def test_each_write_back_operation_validates_against_linears_schema(name):
    problems = validate(linear_schema(), parse(linear_writeback.QUERIES[name]))
    assert [p.message for p in problems] == []


@pytest.mark.parametrize("name", sorted(linear_writeback.QUERIES))
def test_each_write_back_operation_validates_against_the_fake(name):
    assert [p.message for p in validate(FAKE_SCHEMA, parse(linear_writeback.QUERIES[name]))] == []
