"""The expected completion a token-limited request reserves (plugins/token_limit/expected.py)."""

import asyncio

from tollgate.plugins.token_limit import expected
from tollgate.plugins.token_limit.expected import CompletionEstimates, reservation
from tollgate.store.local import LocalStore


def test_the_rule():
    assert reservation(cap=None, learnt=None, default=256, exact=False, room=10_000) == 256
    assert reservation(cap=100, learnt=None, default=256, exact=False, room=10_000) == 100
    assert reservation(cap=4096, learnt=44, default=256, exact=False, room=10_000) == 44
    assert reservation(cap=30, learnt=44, default=256, exact=False, room=10_000) == 30
    assert reservation(cap=4096, learnt=44, default=256, exact=True, room=10_000) == 4096   # reserve_max_tokens
    assert reservation(cap=None, learnt=44, default=256, exact=True, room=10_000) == 44     # no cap to reserve
    assert reservation(cap=4096, learnt=None, default=256, exact=True, room=1000) == 1000   # what the window holds
    assert reservation(cap=None, learnt=None, default=256, exact=False, room=-5) == 0


async def test_learns_a_high_percentile_and_shares_it_through_the_store():
    store = LocalStore()
    node_a, node_b = CompletionEstimates(), CompletionEstimates()
    assert node_a.expected("k", store) is None
    for value in range(1, 101):                 # 1..100: the last 64 are 37..100
        await node_a.record("k", store, value)
    assert node_a.expected("k", store) == 97    # nearest-rank 95th percentile of 37..100
    assert node_b.expected("k", store) is None  # nothing learnt on this node yet; it reads the store meanwhile
    await asyncio.sleep(0.01)
    learnt = node_b.expected("k", store)
    assert learnt is not None and 37 <= learnt <= 100   # random slots of the store's ring: recent answers only
    await store.close()


def test_few_samples_give_the_largest():
    samples = expected._Samples()
    for value in (10, 50, 20):
        samples.add(value)
    assert samples.quantile() == 50


async def test_a_busy_route_writes_its_answers_now_and_then_not_per_request(monkeypatch):
    """The first answer is written at once; those within WRITE_SECONDS after it wait for the next write (the
    refresh writes before it reads, so the store then holds them too)."""
    store = LocalStore()
    writes = []
    hset = store.hset

    async def counted(key, mapping, ttl=None):
        writes.append(dict(mapping))
        await hset(key, mapping, ttl)

    monkeypatch.setattr(store, "hset", counted)
    node = CompletionEstimates()
    for value in range(1, 51):
        await node.record("k", store, value)
    assert len(writes) == 1 and list(writes[0].values()) == [b"1"]
    monkeypatch.setattr(expected, "REFRESH_SECONDS", 0.0)
    node.expected("k", store)
    await asyncio.sleep(0.01)
    assert len(writes) == 2 and set(writes[1].values()) <= {str(v).encode() for v in range(2, 51)}
    assert {int(v) for v in (await store.hgetall("k")).values()} & set(range(2, 51))
    await store.close()
