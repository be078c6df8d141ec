"""A tasks module that fails at import, for the CLI's ``--app`` error test."""

raise RuntimeError("this module fails on import on purpose")
