"""Tollgate's implementation of Kong's external plugin-server protocol (MsgPack:1)."""
