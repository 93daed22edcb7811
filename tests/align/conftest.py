"""Every alignment test runs its tiny models on one torch thread (see the root conftest's `one_thread`)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
