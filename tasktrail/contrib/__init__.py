"""Integrations with the frameworks business data lives in, each behind its own extra."""
