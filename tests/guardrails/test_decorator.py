"""The prompt decorator (Kong's ai-prompt-decorator)."""

from tollgate.plugins.guardrails.decorator import Decorator


def test_prepended_and_appended_messages_keep_their_roles_and_order():
    decorator = Decorator({"prompts": {"prepend": [{"role": "system", "content": "Be brief."},
                                                   {"role": "assistant", "content": "Understood."}],
                                       "append": [{"role": "user", "content": "Answer in French."}]}})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert decorator.apply(body) == {"model": "m", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Understood."},
        {"role": "user", "content": "hi"}, {"role": "user", "content": "Answer in French."}]}
    assert body["messages"] == [{"role": "user", "content": "hi"}]          # the client's body is not changed


def test_requests_without_messages_and_empty_configs_are_left_alone():
    assert Decorator({"prompts": {"append": [{"content": "x"}]}}).apply({"prompt": "hi"}) is None
    assert not Decorator({})
