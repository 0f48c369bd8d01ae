"""The documentation: README size, links that resolve, and a benchmark page made from its JSON."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`: the harness is not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as bench_cli  # noqa: E402
from benchmarks import page  # noqa: E402

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted([README, *DOCS.glob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The markdown without code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1 on repeats."""
    seen: dict[str, int] = {}
    out = set()
    for title in HEADING.findall(FENCE.sub("", text)):  # code spans in a title keep their text
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(path: Path) -> Iterator[tuple[Path, str]]:
    """(target file, anchor) for every relative link in a page; external links are not ours."""
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        yield (path.parent / file_part).resolve() if file_part else path, anchor


def test_readme_is_short() -> None:
    assert README.stat().st_size < 12_000


def test_every_page_is_linked_from_the_index() -> None:
    listed = {target for target, _ in links(DOCS / "README.md")}
    assert {p.resolve() for p in DOCS.glob("*.md") if p.name != "README.md"} <= listed


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target, anchor in links(path):
        if not target.exists():
            broken.append(f"{target.relative_to(ROOT)}: no such file")
        elif anchor and anchor not in anchors(target.read_text()):
            broken.append(f"{target.relative_to(ROOT)}#{anchor}: no such heading")
    assert not broken, broken


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("# Benchmarks\n", {"benchmarks"}, id="plain"),
        pytest.param("## Routes and the default\n", {"routes-and-the-default"}, id="words"),
        pytest.param("## `[server]`: the master\n", {"server-the-master"}, id="code-and-colon"),
        pytest.param("## Notes\n\n## Notes\n", {"notes", "notes-1"}, id="repeated"),
        pytest.param("```sh\n# not a heading\n```\n", set(), id="in-code-block"),
    ],
)
def test_anchor_rule(text: str, expected: set[str]) -> None:
    assert anchors(text) == expected


def test_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Here\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](there.md#here) [gone](missing.md) [bad](there.md#elsewhere) "
        "`[code](nothing.md)` [web](https://example.com/x.md)\n"
    )
    found = [(target.name, anchor) for target, anchor in links(doc)]
    assert found == [("there.md", "here"), ("missing.md", ""), ("there.md", "elsewhere")]


def test_benchmark_page_is_rendered_from_its_json() -> None:
    results = json.loads((DOCS / "benchmarks.json").read_text())
    assert page.render(results) == (DOCS / "benchmarks.md").read_text()


def test_readme_quotes_the_benchmark_page() -> None:
    # The README's figures are quoted (markdown "> " lines) from docs/benchmarks.md, verbatim.
    quoted = [line[2:] for line in README.read_text().splitlines() if line.startswith("> ")]
    assert quoted
    lines = set((DOCS / "benchmarks.md").read_text().splitlines())
    assert [q for q in quoted if q not in lines] == []


def test_render_option_copies_the_json_and_writes_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The output paths point into tmp_path; the command line and files are the real ones.
    monkeypatch.setattr(page, "DATA", tmp_path / "docs" / "benchmarks.json")
    monkeypatch.setattr(page, "PAGE", tmp_path / "docs" / "benchmarks.md")
    source = tmp_path / "latest.json"
    source.write_text((DOCS / "benchmarks.json").read_text())
    assert bench_cli.main(["--render", str(source)]) == 0
    assert page.DATA.read_text() == source.read_text()
    assert page.PAGE.read_text() == (DOCS / "benchmarks.md").read_text()
    page.PAGE.write_text("stale\n")
    assert bench_cli.main(["--render", str(page.DATA)]) == 0  # from the copy: only the page
    assert page.PAGE.read_text() == (DOCS / "benchmarks.md").read_text()
