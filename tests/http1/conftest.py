from __future__ import annotations

import pytest

from tollgate import http1


@pytest.fixture
async def client():
    made = http1.Client()
    yield made
    await made.close()
