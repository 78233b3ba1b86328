"""Documentation hygiene: the package cites only sources a user has (issue 18).

The research notes under ../shared are not shipped; docstrings cite papers, pipeline documents and
measured facts, listed in docs/sources.md.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tsoreduce"

# byte patterns: the package also holds FITS / ASDF data files
FORBIDDEN = [
    re.compile(rb"\.\./shared"),
    re.compile(rb"/work/shared"),
    re.compile(rb"shared/research"),
    re.compile(rb"anchors\.md"),
    re.compile(rb"ARCHITECTURE\.md"),
    re.compile(rb"(?<![\w/])mrs\.md"),  # the research note, not a future docs/mrs.md
]
DOCS_REF = re.compile(rb"\bdocs/[\w./-]+\.md\b")


def _package_files():
    return [p for p in sorted(PACKAGE.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]


def test_package_cites_no_unshipped_notes():
    hits = []
    files = _package_files()
    for path in files:
        data = path.read_bytes()
        for pat in FORBIDDEN:
            for m in pat.finditer(data):
                line = data.count(b"\n", 0, m.start()) + 1
                hits.append(f"{path.relative_to(ROOT)}:{line}: {m.group().decode(errors='replace')}")
    print(f"\nscanned {len(files)} files under tsoreduce/, {len(hits)} citations of unshipped notes")
    assert not hits, "cite the primary source (docs/sources.md) instead of:\n" + "\n".join(hits)


def test_tutorials_cite_no_research_notes():
    # tutorials may point at real data under /work/shared/data, but not at the research notes
    notes = FORBIDDEN[2:]
    hits = [f"{p.relative_to(ROOT)}: {m.group().decode()}"
            for p in sorted((ROOT / "tutorials").glob("*")) if p.suffix in (".py", ".ipynb", ".md")
            for pat in notes for m in pat.finditer(p.read_bytes())]
    assert not hits, "cite the primary source (docs/sources.md) instead of:\n" + "\n".join(hits)


def test_docs_paths_cited_in_package_exist():
    refs = {}
    for path in _package_files():
        for m in DOCS_REF.finditer(path.read_bytes()):
            refs.setdefault(m.group().decode(), []).append(str(path.relative_to(ROOT)))
    missing = {r: where for r, where in refs.items() if not (ROOT / r).is_file()}
    print(f"\ndocs/ files cited from the package: {sorted(refs)}")
    assert "docs/sources.md" in refs, "the package should point readers to docs/sources.md"
    assert not missing, f"cited docs files that do not exist: {missing}"


def test_sources_md_is_one_bullet_per_reference_without_duplicates():
    lines = (ROOT / "docs" / "sources.md").read_text().splitlines()
    bullets = [ln[2:].strip() for ln in lines if ln.startswith("- ")]
    dup = sorted({b for b in bullets if bullets.count(b) > 1})
    print(f"\ndocs/sources.md: {len(bullets)} references")
    assert bullets and not dup, f"duplicate entries in docs/sources.md: {dup}"
