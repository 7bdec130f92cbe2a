"""Tests of the mock LLM upstream (tollgate.mock)."""
