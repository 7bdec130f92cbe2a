"""The relay: the HTTP server a Tollgate route's Service points at, where the AI work runs."""
