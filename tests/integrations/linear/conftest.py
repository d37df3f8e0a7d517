"""Fixtures for the Linear client: the fake Linear GraphQL endpoint."""

from __future__ import annotations

import pytest

from tests.fakes.linear import fake_linear  # noqa: F401 - re-exported as a fixture

API_KEY = "lin_api_test_key"


@pytest.fixture
def linear(fake_linear):  # noqa: F811
    return fake_linear
