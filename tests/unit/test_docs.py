"""The documentation stays true to the repository: the campaign-format examples are the shipped
campaigns (or at least load), and every relative link in README.md and docs/*.md resolves to a
file inside the repository (anchors are not checked)."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from nurture.core.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
CAMPAIGNS = REPO / "campaigns"
FORMAT_DOC = REPO / "docs" / "campaign-format.md"
LINKED_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
# [text](target) and [text](target "title"); images too
MD_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.I)


def normalised_lines(text: str) -> list[str]:
    """Lines with indentation and runs of blanks collapsed, empty lines dropped: a quote may be
    re-indented or re-aligned but not reworded, reordered or cut in the middle."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def quoted_in(block: str, text: str) -> bool:
    """Whether `block` appears as consecutive lines of `text`, modulo whitespace."""
    needle, hay = normalised_lines(block), normalised_lines(text)
    if not needle:
        return False
    return any(hay[i:i + len(needle)] == needle for i in range(len(hay) - len(needle) + 1))


def check_block(block: str, campaigns_dir: Path, scratch: Path) -> str | None:
    """None when the block is fine, else why not. A block is fine when it is valid YAML and
    either a quote of a file under `campaigns_dir`, or a whole file the config loader accepts
    in place of `lifecycle.yaml` (a mapping with `scoring`) or as an extra campaign file."""
    try:
        parsed = yaml.safe_load(textwrap.dedent(block))
    except yaml.YAMLError as exc:
        return f"not valid YAML: {exc}"
    if any(quoted_in(block, p.read_text(encoding="utf-8"))
           for p in sorted(campaigns_dir.rglob("*.y*ml"))):
        return None
    if not isinstance(parsed, dict):
        return "neither a quote of campaigns/ nor a whole config file"
    directory = scratch / "campaigns"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(campaigns_dir, directory)
    name = "lifecycle.yaml" if "scoring" in parsed else "zz-doc-example.yaml"
    (directory / name).write_text(textwrap.dedent(block), encoding="utf-8")
    try:
        load_config(directory)
    except ConfigError as exc:
        return f"not a quote of campaigns/, and it does not load: {exc.report()}"
    return None


def yaml_blocks() -> list[str]:
    return YAML_BLOCK.findall(FORMAT_DOC.read_text(encoding="utf-8"))


def test_the_format_doc_has_examples_of_both_files():
    blocks = yaml_blocks()
    assert len(blocks) >= 8
    shipped = {p.name: p.read_text(encoding="utf-8") for p in CAMPAIGNS.glob("*.yaml")}
    assert any(quoted_in(b, shipped["lifecycle.yaml"]) for b in blocks)
    assert any(quoted_in(b, shipped["inbound-saas.yaml"]) for b in blocks)


@pytest.mark.parametrize("index", range(len(YAML_BLOCK.findall(
    FORMAT_DOC.read_text(encoding="utf-8")))))
def test_every_yaml_example_is_shipped_or_loads(index, tmp_path):
    block = yaml_blocks()[index]
    assert check_block(block, CAMPAIGNS, tmp_path) is None, block


def test_the_example_check_can_fail(tmp_path):
    lifecycle = (CAMPAIGNS / "lifecycle.yaml").read_text(encoding="utf-8")
    quote = "\n".join(lifecycle.splitlines()[23:31])  # routing.mql, as the doc quotes it
    assert check_block(quote, CAMPAIGNS, tmp_path) is None
    assert check_block(textwrap.indent(quote, "    "), CAMPAIGNS, tmp_path) is None
    reworded = quote.replace("sla_hours: 48", "sla_hours: 24")
    assert "does not load" in check_block(reworded, CAMPAIGNS, tmp_path)
    assert "not valid YAML" in check_block("a: [unclosed", CAMPAIGNS, tmp_path)
    whole = lifecycle.replace("max_touches_per_week: 2", "max_touches_per_week: 3")
    assert check_block(whole, CAMPAIGNS, tmp_path) is None  # another config that loads
    broken = lifecycle.replace("max_touches_per_week: 2", "max_touches_per_wek: 3")
    assert "max_touches_per_wek" in check_block(broken, CAMPAIGNS, tmp_path)


def relative_links(doc: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [t for t in MD_LINK.findall(text) if not EXTERNAL.match(t)]


def broken_links(doc: Path, root: Path = REPO) -> list[str]:
    """Relative links of `doc` that do not name an existing file or directory inside `root`
    (the part after `#` is ignored)."""
    bad = []
    for target in relative_links(doc):
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(root.resolve()) or not path.exists():
            bad.append(target)
    return bad


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves_inside_the_repository(doc):
    assert broken_links(doc) == []


def test_the_link_check_can_fail(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("# r\n", encoding="utf-8")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "DESIGN.md").write_text("outside\n", encoding="utf-8")
    doc = root / "docs" / "guide.md"
    doc.write_text("[ok](../README.md#try-it) [web](https://example.com) [a](#x)\n"
                   "[gone](missing.md) [out](../../shared/DESIGN.md)\n"
                   "```\n[in a code block](nowhere.md)\n```\n", encoding="utf-8")
    assert broken_links(doc, root) == ["missing.md", "../../shared/DESIGN.md"]


MODULE_NAME = re.compile(r"`(nurture(?:\.[a-z_]+)+)`")
EVENT_NAMESPACES = ("nurture.lead.", "nurture.campaign.")
REPO_PATH = re.compile(r"`((?:nurture|lead_store|flows)/[\w/.-]*)`")


def missing_modules(text: str, root: Path = REPO) -> list[str]:
    """Dotted `nurture.…` module names and `nurture/…` paths in backquotes that name nothing
    in the tree (Prefect event names such as `nurture.lead.mql` are not modules)."""
    missing = []
    for name in MODULE_NAME.findall(text):
        if name.startswith(EVENT_NAMESPACES) or name in ("nurture.lead", "nurture.campaign"):
            continue
        path = root / name.replace(".", "/")
        if not (path.is_dir() or path.with_suffix(".py").is_file()):
            missing.append(name)
    missing += [p for p in REPO_PATH.findall(text) if not (root / p).exists()]
    return missing


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: p.name)
def test_every_module_the_docs_name_exists(doc):
    assert missing_modules(doc.read_text(encoding="utf-8")) == []


def test_the_module_check_can_fail():
    text = ("`nurture.core.scoring` `nurture.lead.mql` `nurture/core/ledger.py` "
            "`nurture.scoring` `lead_store/rows.py` `nurture.store.store`")
    assert missing_modules(text) == ["nurture.scoring", "lead_store/rows.py"]
