"""What every Tollgate plugin does in Kong: attach its policy to the request, nothing more.

The work (limits, guards, cache, the provider call) happens in the relay, which gets the
body anyway; keeping the Kong side to HandleEvent and one header (plus reading the consumer,
once per request) is what keeps the plugins cheap.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import route_names, runtime
from ..attachments import HEADER


def identity_of(consumer: Any) -> dict[str, Any]:
    """The consumer Kong authenticated, reduced to what limits and analytics key on."""
    if not isinstance(consumer, dict) or not consumer.get("id"):
        return {}
    return {k: consumer[k] for k in ("id", "username", "custom_id") if consumer.get(k)}


class Policy:
    """Relay-side half of a plugin: hooks the relay calls for each request it serves."""

    #: a terminal stage (one with ``serve``) whose requests are LLM calls, recorded with Kong's AI analytics
    answers_llm_requests: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], plugin: str):
        self.config = config
        self.plugin = plugin

    async def before(self, ctx: Any) -> Any:
        """A request stage, in priority order: may rewrite the request (``ctx.set_json``), or answer it instead with
        a ready response (a refusal) or a ``relay.pipeline.Reply`` (an answer the filters before it still see)."""
        return None

    def answer_filter(self, ctx: Any) -> Any:
        """This request's ``relay.pipeline.AnswerFilter``, or None when the policy has nothing to do on the answer."""
        return None

    async def after(self, ctx: Any) -> None:
        """Run once the answer is complete (or the client went away, or a stage answered), with usage known."""


class AttachingPlugin:
    """The Kong-side ``Plugin`` of every Tollgate plugin.

    ``reads_consumer``: whether access asks Kong for the consumer. A plugin that always shares its requests with
    tollgate-proxy (the relay serves no request without the proxy's attachment) leaves it to the proxy, which runs
    last: the relay takes the identity from the proxy's attachment of the same request, so the consumer crosses the
    socket once per request, not once per plugin.
    """

    name: ClassVar[str]
    policy_class: ClassVar[type[Policy]] = Policy
    reads_consumer: ClassVar[bool] = True
    #: access awaits only PDK calls: the plugin server drives it inline, without a task (pluginserver/events.py)
    runs_inline: ClassVar[bool] = True

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.policy = self.policy_class(config, self.name)
        self._route_named = self.route_id is None   # an instance of one route learns its name once (route_names)

    @property
    def route_id(self) -> str | None:
        route = self.config.get("route_id")
        return route.get("id") if isinstance(route, dict) else route or None

    async def access(self, kong: Any) -> None:
        await kong.service.request.add_header(HEADER, await self.attach(kong))

    async def attach(self, kong: Any, extra: dict[str, Any] | None = None) -> str:
        """Record this instance's attachment for the request (with the consumer, if this plugin reads it)."""
        if not self._route_named:
            self._route_named = True
            route_names.learn(self.route_id, await kong.router.get_route())  # type: ignore[arg-type]
        identity = identity_of(await kong.client.get_consumer()) if self.reads_consumer else {}
        process = runtime.current()
        # The instance, taken now: Kong may close it (a config change) before the request reaches the relay.
        instance = process.instances.of_handler(self) if process.instances is not None else None
        return process.attachments.issue(self.name, self, identity, extra, instance)
