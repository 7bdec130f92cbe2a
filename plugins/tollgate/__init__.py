"""Tollgate: AI-gateway plugins for Kong OSS, served by one process (plugin server + relay)."""

__version__ = "0.1.0"
