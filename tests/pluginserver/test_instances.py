"""Which plugins a request's config build puts on it, from the instances Kong's workers started.

Each scenario replays the StartInstance calls of Kong 3.9.3 (`plugin.lua`): per worker, an instance is started at a
plugin's first event under a build, in priority order within a request, and replaces the worker's instance of the
same plugin id; ``__seq__`` rises with every build of every worker.
"""

from types import SimpleNamespace

from tollgate.pluginserver.instances import InstanceTable

P, M, N = "tollgate-proxy", "tollgate-token-limit", "tollgate-cost-quota"


class Kong:
    def __init__(self):
        self.table = InstanceTable()

    def start(self, name, seq, worker=1, route="r", consumer=None, service=None, plugin_id=None):
        config = {"__seq__": seq, "__plugin_id": plugin_id or f"{name}@{route}@{consumer}@{service}"}
        for key, value in (("route_id", route), ("consumer_id", consumer), ("service_id", service)):
            if value:
                config[key] = {"id": value}
        return self.table.add(SimpleNamespace(name=name), config, object(), worker)

    def expected(self, anchor, route="r", service=None, consumer=None):
        return self.table.expected(anchor, route, service, consumer)


def test_a_removed_plugin_drops_out_whatever_its_seq():
    kong = Kong()
    kong.start(M, 11)                  # M iterated after P in the build: a higher __seq__
    p1 = kong.start(P, 10)
    assert kong.expected(p1) == {M, P}
    p2 = kong.start(P, 14)             # the next build has no M: the first request starts P anew
    assert kong.expected(p2) == {P}


def test_a_plugin_kept_by_the_new_build_is_expected_from_its_first_request():
    kong = Kong()
    kong.start(M, 11)
    kong.start(P, 10)
    kong.start(M, 15)
    p2 = kong.start(P, 14)
    assert kong.expected(p2) == {M, P}


def test_an_added_plugin_is_expected_from_the_request_that_starts_it():
    kong = Kong()
    p1 = kong.start(P, 1)
    assert kong.expected(p1) == {P}
    kong.start(N, 3)                   # new plugin id: no predecessor
    p2 = kong.start(P, 2)
    assert kong.expected(p2) == {N, P}


def test_workers_are_followed_one_by_one():
    kong = Kong()
    # Build 1: worker A draws 1-2, worker B 3-4; each starts its own instances.
    kong.start(M, 1, worker="A"); kong.start(P, 2, worker="A")
    kong.start(M, 3, worker="B"); kong.start(P, 4, worker="B")
    # Build 2 drops M. Worker A's first request: B's instances (started later, with higher seqs) stay out of it.
    pa = kong.start(P, 5, worker="A")
    assert kong.expected(pa) == {P}
    pb = kong.start(P, 6, worker="B")
    assert kong.expected(pb) == {P}
    # Build 3 brings M back: each worker starts it before the proxy.
    kong.start(M, 7, worker="A"); pa = kong.start(P, 8, worker="A")
    assert kong.expected(pa) == {M, P}


def test_an_old_request_finishing_after_the_switch_proves_nothing():
    kong = Kong()
    kong.start(M, 1); kong.start(P, 2)
    kong.start(M, 3); p2 = kong.start(P, 4)
    kong.start(M, 1)                   # a request begun under build 1 runs M again: Kong restarts the old config
    m3 = kong.start(M, 3)              # and the next request of build 2 starts it anew
    n = kong.start(N, 5, route="other")
    p_other = kong.start(P, 6, route="other")
    assert kong.expected(p2) == {M, P}
    assert m3.order > p2.floor[0]
    assert kong.expected(p_other, route="other") == {N, P}


def test_scopes_decide_which_requests_expect_a_plugin():
    kong = Kong()
    kong.start(M, 1, consumer="alice")
    kong.start(N, 2, route=None, service="svc")
    kong.start(M, 3, route=None, plugin_id="global-limit")   # a global instance
    p = kong.start(P, 4)
    assert kong.expected(p, consumer="alice", service="svc") == {M, N, P}
    assert kong.expected(p, consumer="bob") == {M, P}          # the global limit; not alice's, nor the service's
    assert kong.expected(p, route="elsewhere") == {M}


def test_a_restart_of_the_same_config_is_no_new_build():
    kong = Kong()
    kong.start(M, 1); kong.start(P, 2)
    kong.start(M, 1); p = kong.start(P, 2)    # after "no plugin instance", Kong starts the same seqs again
    assert kong.expected(p) == {M, P}


def test_closing_an_instance_removes_it_from_its_worker():
    kong = Kong()
    m = kong.start(M, 1)
    p = kong.start(P, 2)
    kong.table.close(m.id)
    assert kong.expected(p) == {P}
    assert kong.table.of_handler(p.handler) is p and kong.table.of_handler(m.handler) is None


def test_the_remembered_answer_follows_every_start_and_close():
    """`expected` is remembered per anchor, route, service and consumer: an instance that starts or closes in the
    worker afterwards changes the answer for the same anchor."""
    kong = Kong()
    p1 = kong.start(P, 1)
    assert kong.expected(p1) == {P}
    n = kong.start(N, 3)               # the same build's next request runs N too
    assert kong.expected(p1) == {N, P}
    kong.table.close(n.id)
    assert kong.expected(p1) == {P}
