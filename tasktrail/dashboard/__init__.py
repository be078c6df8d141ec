"""The web dashboard: business objects, jobs, tasks, workers and schedules.

``create_app(app)`` is an ASGI application (Starlette) to serve with uvicorn, as
``tasktrail dashboard`` does, or to mount in a service of your own under a prefix. It
needs the ``dashboard`` extra: ``pip install 'tasktrail[dashboard]'``.
"""

from __future__ import annotations

from .web import Token, create_app, parse_tokens

__all__ = ["Token", "create_app", "parse_tokens"]
