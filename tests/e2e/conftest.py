"""Fixtures of the end-to-end tests; the machinery is in harness.py."""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from .harness import Gateway, compose_gateway, docker_engine_available, host_kong_gateway


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    """A running Kong with Tollgate: compose stack if a Docker engine answers, else host `kong`, else skip."""
    forced = os.environ.get("TOLLGATE_E2E", "").strip().lower()
    kong = shutil.which("kong")
    if forced == "compose" or (not forced and docker_engine_available()):
        if not docker_engine_available():
            pytest.fail("TOLLGATE_E2E=compose but no Docker engine answers")
        with compose_gateway() as gw:
            yield gw
    elif forced == "kong" or (not forced and kong):
        if not kong:
            pytest.fail("TOLLGATE_E2E=kong but no kong binary on PATH")
        with host_kong_gateway(kong) as gw:
            yield gw
    else:
        pytest.skip("no Docker engine and no kong binary: real-Kong tests skipped")
