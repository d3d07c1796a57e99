"""The documentation site's checks (scripts/check_site.py): every page in the nav, and
nothing loaded from another host.

The build itself (``mkdocs build --strict``) is a stage of ``scripts/test``'s full run,
which runs scripts/check_site.py on the real site; here its checks are shown to catch
what they are for, and the nav rule is held on the real ``docs/`` without mkdocs.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def check_site() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "scripts/check_site.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_page_in_docs_is_in_the_nav(check_site: ModuleType) -> None:
    missing = check_site.pages_missing_from_nav(ROOT / "docs", ROOT / "mkdocs.yml")
    assert missing == [], f"add these pages to nav in mkdocs.yml: {missing}"


def test_every_nav_entry_is_a_page(check_site: ModuleType) -> None:
    listed = check_site.nav_pages((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert "index.md" in listed
    assert "backends/redis.md" in listed  # a nested section is read too
    assert sorted(p for p in listed if not (ROOT / "docs" / p).is_file()) == []


def test_a_page_left_out_of_the_nav_is_named(check_site: ModuleType, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "unlisted.md").write_text("# Unlisted\n", encoding="utf-8")
    (docs / "backends" / "new.md").write_text("# New\n", encoding="utf-8")
    missing = check_site.pages_missing_from_nav(docs, ROOT / "mkdocs.yml")
    assert missing == ["backends/new.md", "unlisted.md"]


def test_nav_is_read_up_to_the_next_top_level_key(check_site: ModuleType) -> None:
    text = (
        "site_name: x\n"
        "nav:\n"
        "  - Home: index.md\n"
        "  - Guides:\n"
        "      - Deep: guides/deep.md\n"
        "\n"
        "      - bare.md\n"
        "      - 'Reference: the API': \"reference/api.md\"\n"
        "theme:\n"
        "  custom: other.md\n"
    )
    assert check_site.nav_pages(text) == {
        "index.md",
        "guides/deep.md",
        "bare.md",
        "reference/api.md",
    }
    assert check_site.nav_pages("site_name: x\n") == set()


PAGE = """\
<!doctype html>
<html><head>
<link rel="stylesheet" href="assets/stylesheets/main.css">
<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">
<link rel="preconnect" href="//fonts.gstatic.com">
<meta property="og:image" content="https://example.org/card.png">
<meta name="viewport" content="width=device-width">
<script src="https://cdnjs.cloudflare.com/ajax/libs/highlight.js/11.8.0/highlight.min.js"></script>
<script src="assets/javascripts/bundle.js"></script>
<style>body {{ background: url("https://cdn.example.com/bg.png") }}</style>
</head><body>
<svg xmlns="http://www.w3.org/2000/svg"><use href="https://icons.example.com/i.svg#x"/></svg>
<img src="benchmarks/threads.png" srcset="a.png 1x, https://img.example.com/b.png 2x">
<div style="background-image: url(//cdn.example.com/x.png)"></div>
<a href="https://docs.djangoproject.com/en/5.2/topics/cache/">a link a reader follows</a>
<p>Text that names https://example.com is no reference.</p>
</body></html>
"""


def test_external_loads_are_found(check_site: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "index.html").write_text(PAGE.format(), encoding="utf-8")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "extra.css").write_text(
        '@import "https://fonts.example.com/font.css";\n.x { src: url(fonts/local.woff2) }\n',
        encoding="utf-8",
    )
    found = check_site.external_loads(tmp_path)
    assert found == [
        "assets/extra.css: CSS: https://fonts.example.com/font.css",
        "page/index.html: <link href>: https://fonts.googleapis.com/css?family=Roboto",
        "page/index.html: <link href>: //fonts.gstatic.com",
        "page/index.html: <meta content>: https://example.org/card.png",
        "page/index.html: <script src>: "
        "https://cdnjs.cloudflare.com/ajax/libs/highlight.js/11.8.0/highlight.min.js",
        "page/index.html: <style>: https://cdn.example.com/bg.png",
        "page/index.html: <use href>: https://icons.example.com/i.svg#x",
        "page/index.html: <img srcset>: https://img.example.com/b.png",
        "page/index.html: <div style>: //cdn.example.com/x.png",
    ]


def test_a_site_of_local_files_passes(check_site: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<link rel="icon" href="assets/favicon.png"><script src="search.js"></script>'
        '<a href="https://github.com/">elsewhere</a>',
        encoding="utf-8",
    )
    assert check_site.external_loads(tmp_path) == []


def test_readme_and_home_page_state_the_supported_pythons() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert project["requires-python"] == ">=3.11"  # else update the sentence below
    tested = [
        c.rsplit(" ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    listed = ", ".join(tested[:-1]) + f" and {tested[-1]}"
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        text = " ".join(page.read_text(encoding="utf-8").split())
        assert "Python 3.11 or later" in text, page
        assert listed in text, (page, listed)


def test_sphinx_role_names_are_dropped_from_the_reference() -> None:
    spec = importlib.util.spec_from_file_location("hooks", ROOT / "scripts/mkdocs_hooks.py")
    assert spec is not None
    assert spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    html = "<p>See :func:<code>cached</code> and :class:<code>CacheInfo</code>; a :b:c.</p>"
    assert hooks.on_page_content(html) == (
        "<p>See <code>cached</code> and <code>CacheInfo</code>; a :b:c.</p>"
    )


def test_every_module_the_guides_import_has_a_reference_page() -> None:
    # A guide that says `from memokit import stats` sends readers to a module whose
    # signatures and docstrings the API reference must show (::: memokit.stats).
    guides = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in guides)
    imported = set(re.findall(r"^\s*from (memokit(?:\.\w+)+) import ", text, re.M))
    imported |= {
        f"memokit.{name}"
        for name in re.findall(r"^\s*from memokit import (\w+)", text, re.M)
        if (ROOT / "memokit" / f"{name}.py").is_file()
    }
    reference = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "reference").glob("*.md")
    )
    documented = set(re.findall(r"^::: ([\w.]+)", reference, re.M))
    assert imported, "the pattern no longer finds the guides' imports"
    missing = sorted(
        m for m in imported if not any(d == m or d.startswith(m + ".") for d in documented)
    )
    assert missing == [], f"add a docs/reference page with '::: <module>' for: {missing}"
