"""Tollgate's Kong plugins: one package each, the Kong-side handler beside its schema and
the relay-side policy that carries the plugin's work out on the request."""
