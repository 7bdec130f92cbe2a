"""A guard for tests whose verdicts a function of the text decides."""

from tollgate.plugins.guardrails.guards.base import Guard, GuardUnavailable


class Scripted(Guard):
    """A guard whose answer is a function of the text (and that may wait for another guard)."""

    type = "scripted"

    def __init__(self, name, decide, *, mode="INPUT", fail_open=False, reveal=False, wait=None, start=None):
        super().__init__(name, {"guarding_mode": mode, "fail_open": fail_open, "reveal_failure_reason": reveal,
                                "timeout": 1000})
        self.decide, self.wait, self.start, self.seen = decide, wait, start, []

    async def _check(self, text, phase):
        self.seen.append(text)
        if self.start is not None:
            self.start.set()
        if self.wait is not None:
            await self.wait.wait()
        verdict = self.decide(text)
        if verdict is None:
            raise GuardUnavailable(f"{self.name}: down")
        return verdict
