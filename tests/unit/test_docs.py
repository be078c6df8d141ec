"""The README is the front door only, and no page links to a file that is not there.

README.md stays under 16 KB (everything else lives in docs/); every relative link in
README.md and in the pages under docs/ names a file of the repository. (The site itself
is built by ``mkdocs build --strict`` in .ci/run, which also checks the anchors.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))

README_LIMIT = 16 * 1024

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def relative_links(text: str) -> list[str]:
    """The targets of the Markdown links and images of ``text`` that are relative paths
    (no scheme, not only an anchor), outside code blocks and code spans."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    return [
        target
        for target in _LINK.findall(prose)
        if not _SCHEME.match(target) and not target.startswith("#")
    ]


def test_relative_links_are_found_outside_code_only() -> None:
    text = (
        "See [the worker](worker.md#logs), ![a picture](images/x.png) and "
        "[a site](https://example.org/a.md), [here](#anchor), `[not](code.md)`.\n"
        "```python\nvalue = table[key](argument.md)\n```\n"
    )
    assert relative_links(text) == ["worker.md#logs", "images/x.png"]


def test_readme_is_the_front_door_only() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, (
        f"README.md is {size:,} bytes, over {README_LIMIT:,}: move the detail into a page "
        "under docs/ and link to it"
    )
    assert "\npython -m pytest\n" in README.read_text(encoding="utf-8")  # .ci/run runs it


def test_there_are_pages() -> None:
    assert len(PAGES) >= 10, PAGES


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_names_a_file_that_exists(page: Path) -> None:
    missing = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"
