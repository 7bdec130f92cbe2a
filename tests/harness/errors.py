"""What can go wrong inside the modelled Kong."""


class KongStartError(RuntimeError):
    """``kong start`` would stop with this error (plugin discovery, config)."""


class KongLuaError(Exception):
    """A Lua error raised inside Kong (a PDK call refused, a failed pack, an assertion in
    the RPC code). In ``access`` Kong answers 500 ``An unexpected error occurred``; in the
    ``log`` timer the timer dies and the plugin server's event is left waiting."""


class ExitSignal(Exception):
    """``kong.response.exit`` / ``error`` ended the plugin's handler: Kong never answers
    that step (the handler's coroutine is dropped)."""


class ClientAborted(Exception):
    """The client closed its connection while Kong waited for the upstream (nginx then closes the upstream
    connection too and logs 499)."""
