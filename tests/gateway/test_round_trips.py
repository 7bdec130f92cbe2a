"""Issue 19, section 3: PDK round trips per request through the Kong double (what Kong's side pays for)."""

from __future__ import annotations

from .routes import deck, proxy_config

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
CHAIN = [{"name": "key-auth", "config": {"key_names": ["apikey"]}},
         {"name": "tollgate-token-limit", "config": {"limits": [{"limit": 1_000_000, "window_size": "minute"}]}},
         {"name": "tollgate-cost-quota", "config": {"budgets": [{"amount": 1000}]}}]


async def test_full_chain_in_seven_and_the_proxy_alone_in_three(tollgate_process, kong, mock_llm):
    process = tollgate_process()
    proxy = {"name": "tollgate-proxy", "config": proxy_config(mock_llm.url + "/v1/chat/completions")}
    double = await kong(deck(process.relay_url, {"/chain": [*CHAIN, proxy], "/alone": [proxy]},
                             consumers=[{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]}]),
                        process=process)
    for path, expected in (("/chain", 7), ("/alone", 3)):
        for _ in range(3):   # the first request of each plugin also starts its instance
            answer = await double.request("POST", path + "/v1/chat/completions", json_body=BODY,
                                          headers={"Content-Type": "application/json", "apikey": "alice-key"})
            assert answer.status == 200, answer.text
        stats = double.stats.last
        assert stats.round_trips == expected, stats.by_plugin
        # the consumer crosses the socket once per request, from the proxy, which runs last
        assert {plugin for plugin, method in stats.pdk_calls if method == "kong.client.get_consumer"} == \
            {"tollgate-proxy"}
