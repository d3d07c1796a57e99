"""Build the documentation site and check it: ``python scripts/check_site.py``.

Three checks, each failing the run (exit 1) with what to fix:

- ``mkdocs build --strict`` into a temporary directory: a broken link, a missing anchor,
  an unresolved API reference or a page left out of ``nav`` fails the build;
- every page in ``docs/`` is in ``mkdocs.yml``'s ``nav`` (read without mkdocs, so
  ``tests/test_docs_site.py`` runs it everywhere);
- no built page or stylesheet loads anything from another host (a CDN script, a web
  font, a social card image): the site must read the same offline. Links a reader
  clicks (``<a href>``) may point anywhere. The theme's JavaScript bundles are not
  read: they hold the URLs of features this site leaves off (and licence comments).

``--site DIR`` checks an already built site instead of building one.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# An absolute URL to some host: http(s) or protocol-relative.
_EXTERNAL = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
# url(...) and @import in CSS, quoted or not.
_CSS_URL = re.compile(
    r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""", re.IGNORECASE
)
# Attributes whose URL the browser fetches by itself, whatever the tag.
_LOADING_ATTRIBUTES = {"src", "srcset", "data", "poster", "background", "action", "formaction"}


class _Loads(HTMLParser):
    """Collect the URLs a page would fetch from another host when opened."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if not value:
                continue
            if name == "style":
                self.found += [f"<{tag} style>: {url}" for url in _CSS_URL.findall(value)]
            elif name == "srcset":
                urls = [part.split()[0] for part in value.split(",") if part.strip()]
                self.found += [f"<{tag} srcset>: {u}" for u in urls if _EXTERNAL.match(u)]
            elif (
                name in _LOADING_ATTRIBUTES
                # <link> fetches whatever its rel: stylesheet, icon, preload, preconnect.
                or (name == "href" and tag == "link")
                # An SVG <use> pulls in another document.
                or (name in {"href", "xlink:href"} and tag == "use")
                # A social card or any other URL handed to the page's readers.
                or (name == "content" and tag == "meta")
            ) and _EXTERNAL.match(value):
                self.found.append(f"<{tag} {name}>: {value.strip()}")
        if tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.found += [f"<style>: {url}" for url in _CSS_URL.findall(data)]


def external_loads(site: Path) -> list[str]:
    """Every reference in the built ``site`` that would fetch from another host."""
    problems: list[str] = []
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            parser = _Loads()
            parser.feed(path.read_text(encoding="utf-8"))
            parser.close()
            found = parser.found
        elif path.suffix == ".css":
            found = [f"CSS: {url}" for url in _CSS_URL.findall(path.read_text(encoding="utf-8"))]
        else:
            continue
        problems += [f"{path.relative_to(site)}: {what}" for what in found]
    return problems


def nav_pages(mkdocs_yml: str) -> set[str]:
    """The Markdown files ``nav`` names, read from the text of ``mkdocs.yml``.

    Read by pattern rather than with a YAML parser, so that the test needs nothing
    installed: every ``.md`` value between ``nav:`` and the next top-level key.
    """
    match = re.search(r"^nav:\s*\n((?:[ \t]+.*\n|[ \t]*\n)*)", mkdocs_yml, re.MULTILINE)
    if match is None:
        return set()
    return set(re.findall(r"^[ \t]*-\s*(?:.*:\s*)?['\"]?([^\s'\"]+\.md)['\"]?\s*$", match[1], re.M))


def pages_missing_from_nav(docs: Path, mkdocs_yml: Path) -> list[str]:
    """The pages under ``docs`` that ``mkdocs_yml``'s ``nav`` does not list."""
    listed = nav_pages(mkdocs_yml.read_text(encoding="utf-8"))
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md")}
    return sorted(pages - listed)


def build(site: Path) -> int:
    """``mkdocs build --strict`` into ``site``; mkdocs's exit status."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's notice, not ours
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    return subprocess.run(
        [*command, "--site-dir", str(site)], cwd=ROOT, env=env, check=False
    ).returncode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/check_site.py", description=__doc__)
    parser.add_argument("--site", type=Path, help="check this built site; build none")
    args = parser.parse_args(argv)
    failed = False
    missing = pages_missing_from_nav(ROOT / "docs", ROOT / "mkdocs.yml")
    for page in missing:
        print(f"docs/{page} is not in mkdocs.yml's nav: add it there", file=sys.stderr)
        failed = True
    with tempfile.TemporaryDirectory(prefix="memokit-site-") as tmp:
        site = args.site or Path(tmp)
        if args.site is None and build(site) != 0:
            print("mkdocs build --strict failed (its warnings are above)", file=sys.stderr)
            return 1
        for problem in external_loads(site):
            print(f"loads from another host: {problem}", file=sys.stderr)
            failed = True
        pages = len(list(site.rglob("*.html")))
    if not failed:
        print(f"the site builds with --strict: {pages} pages, nothing loaded from another host")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
