"""Fixtures of the store tests: an in-memory store, a small pool, an ensemble on it."""

from __future__ import annotations

import pytest
from store_helpers import add_ensemble, make_frame

from hyre_engine.store import MEMORY, Store


@pytest.fixture
def store():
    with Store(MEMORY) as s:
        yield s


@pytest.fixture
def pool(store):
    return store.add_pool("demo", make_frame(5), source="unit test")


@pytest.fixture
def session_setup(store, pool):
    add_ensemble(store, pool)
    return pool, "ens1"
