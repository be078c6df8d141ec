"""mkdocs hooks of the documentation site (mkdocs.yml names this file).

The docstrings refer to other objects with Sphinx's roles (:class:`Event`,
:meth:`~tasktrail.App.enqueue`), which the Google-style parser leaves as they are: show
them as the code they name, shortened to the last name after a ``~`` as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|exc|obj):<code>(~[\w.]*\.)?([^<]*)</code>")


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub(r"<code>\2</code>", html)
