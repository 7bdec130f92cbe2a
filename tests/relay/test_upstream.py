"""The relay's clients: one of each per event loop, closed together."""

from __future__ import annotations

from tollgate import http1
from tollgate.relay import upstream


async def test_one_client_and_one_session_per_loop_until_closed():
    client, session = upstream.client(), upstream.session()
    assert isinstance(client, http1.Client)
    assert upstream.client() is client and upstream.session() is session
    await upstream.close()
    assert client.closed and session.closed
    fresh = upstream.client()
    assert fresh is not client and not fresh.closed
    await upstream.close()
