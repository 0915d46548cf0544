"""The README and the docs: every Python example runs, the links resolve, the settings reference is complete.

Each Markdown file's ```python blocks run in order in one namespace (a later block continues an
earlier one), in a temporary folder holding a tiny synthetic ``frames/`` folder and ``frame.jpg``.
An HTML comment on the line before a block can only:

- ``<!-- doc-test: skip REASON -->``: not run; the reason is required;
- ``<!-- doc-test: before STEP -->``: run the named setup step of ``SETUP_STEPS`` first (what the
  prose says a person does between two blocks, e.g. naming the clusters on the review page).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import roadparse
from roadparse.config import Settings
from roadparse.synth import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
MARKER = re.compile(r"^<!--\s*doc-test:\s*(\w+)\s*(.*?)\s*-->$")

TINY_BUDGET = {
    "selftrain.rounds": 1, "selftrain.iterations": 2, "selftrain.batch_size": 2,
    "selftrain.crop_size": 64, "selftrain.scale_range": [128, 256], "selftrain.pretrained": False,
}
"""Overrides the examples' runs get on top of what they ask for: the same stages, a training budget a test can afford."""


@dataclass(frozen=True)
class Block:
    """One ```python block: where it starts, its code, and its marker (``skip``/``before`` and argument), if any."""

    path: Path
    line: int
    code: str
    marker: tuple[str, str] | None


def python_blocks(path: Path) -> list[Block]:
    """Returns the ```python blocks of a Markdown file, each with the marker comment just above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            start = index
            index += 1
            body = []
            while index < len(lines) and lines[index].strip() != "```":
                body.append(lines[index])
                index += 1
            above = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
            found = MARKER.match(above)
            marker = (found.group(1), found.group(2)) if found else None
            blocks.append(Block(path, start + 1, "\n".join(body) + "\n", marker))
        index += 1
    return blocks


def _workdir(namespace: dict[str, Any]) -> Path:
    for name in ("step", "run"):
        if name in namespace and hasattr(namespace[name], "workdir"):
            return Path(namespace[name].workdir)
    raise AssertionError("no `step` or `run` with a workdir defined before this block")


def name_clusters(namespace: dict[str, Any]) -> None:
    """What a person does on the review page: writes ``WORKDIR/merge_map.yaml`` naming every cluster."""
    import pyarrow.parquet as pq

    workdir = _workdir(namespace)
    clusters = sorted(set(pq.read_table(workdir / "cluster" / "assignments.parquet")["cluster"].to_pylist()))
    names = ["road", "other"]
    merge_map = {"clusters": {int(cluster): names[i % len(names)] for i, cluster in enumerate(clusters)}}
    (workdir / "merge_map.yaml").write_text(yaml.safe_dump(merge_map), encoding="utf-8")


SETUP_STEPS: dict[str, Callable[[dict[str, Any]], None]] = {"name-clusters": name_clusters}


@pytest.fixture
def doc_folder(tmp_path, monkeypatch):
    """A temporary cwd with ``frames/`` (two tiny synthetic frames) and ``frame.jpg``."""
    make_tiny_dataset(tmp_path / "synthetic", n_frames=2, width=400, height=300)
    shutil.copytree(tmp_path / "synthetic" / "frames", tmp_path / "frames")
    shutil.copyfile(tmp_path / "frames" / "frame_0000.jpg", tmp_path / "frame.jpg")
    monkeypatch.chdir(tmp_path)
    real_run = roadparse.Run

    def tiny_run(*args: Any, overrides: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return real_run(*args, overrides={**TINY_BUDGET, **(overrides or {})}, **kwargs)

    monkeypatch.setattr(roadparse, "Run", tiny_run)
    return tmp_path


FILES_WITH_EXAMPLES = [path for path in MARKDOWN if python_blocks(path)]


def test_the_readme_has_python_examples():
    assert ROOT / "README.md" in FILES_WITH_EXAMPLES


@pytest.mark.parametrize("path", FILES_WITH_EXAMPLES, ids=lambda path: path.name)
def test_python_examples_run(path, doc_folder):
    blocks = python_blocks(path)
    namespace: dict[str, Any] = {"__name__": "__doc_example__"}
    for block in blocks:
        where = f"{path.relative_to(ROOT)}:{block.line}"
        if block.marker is not None:
            kind, argument = block.marker
            assert kind in ("skip", "before"), f"{where}: unknown doc-test marker {kind!r}"
            assert argument, f"{where}: a doc-test marker needs a reason or a step name"
            if kind == "skip":
                continue
            assert argument in SETUP_STEPS, f"{where}: unknown setup step {argument!r} (known: {sorted(SETUP_STEPS)})"
            SETUP_STEPS[argument](namespace)
        exec(compile(block.code, where, "exec"), namespace)


def test_block_parser_reads_markers_and_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- doc-test: skip needs a GPU -->\n```python\ny = 2\n```\n"
        "```bash\nz\n```\n",
        encoding="utf-8",
    )
    first, second = python_blocks(page)
    assert (first.line, first.code, first.marker) == (3, "x = 1\n", None)
    assert (second.code, second.marker) == ("y = 2\n", ("skip", "needs a GPU"))


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", [ROOT / "README.md", ROOT / "CHANGELOG.md"], ids=lambda path: path.name)
def test_relative_links_resolve(path):
    """The site build checks the docs' links strictly; the README and changelog live outside it."""
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert not broken, f"{path.name}: links to missing files: {broken}"


def test_readme_is_a_short_guide():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


HISTORY = re.compile(
    r"\b(?:(?:third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|this)"
    r"\s+round(?:'s)?\b(?!\s+\d))|\b(?:this|that|the same|in the)\s+session\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda path: path.name)
def test_no_history_talk(path):
    """Docs state current facts: no "the eighth round's machine", no "in this session"."""
    found = [match.group(0) for match in HISTORY.finditer(path.read_text(encoding="utf-8"))]
    assert not found, f"{path.name}: {found}"


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_config", DOCS / "gen_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dotted_fields() -> list[tuple[str, Any]]:
    fields = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and hasattr(section, "model_fields"):
            fields += [(f"{name}.{sub}", sub_field) for sub, sub_field in section.model_fields.items()]
        else:
            fields.append((name, field))
    return fields


def test_settings_reference_lists_every_setting_with_its_meaning():
    generator = _load_generator()
    reference = generator.settings_reference()
    rows = {line.split("|")[1].strip(): line for line in reference.splitlines() if line.startswith("| `")}
    for dotted, field in _dotted_fields():
        assert f"`{dotted}`" in rows, f"{dotted} missing from the configuration reference"
        assert field.description, f"{dotted} has no description= to document it"
    assert len(rows) == len(_dotted_fields())


@pytest.mark.parametrize(
    ("dotted", "unit"),
    [("roi.tile_size_m", "m"), ("roi.gsd_cm", "cm/px"), ("masks.min_mask_area_cm2", "cm²"),
     ("embed.surround_cm", "cm"), ("roi.tile_size", "px"), ("selftrain.cache_mb", "MB"), ("cluster.n_clusters", "")],
)
def test_settings_reference_units(dotted, unit):
    assert _load_generator().unit_of(dotted) == unit


def test_every_physical_setting_has_a_unit():
    generator = _load_generator()
    for dotted, _ in _dotted_fields():
        if re.search(r"_(m|cm|cm2|mb)$", dotted):
            assert generator.unit_of(dotted), dotted


def test_configuration_page_is_filled_by_the_build_hook():
    generator = _load_generator()
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert generator.MARKER in page and generator.PROFILES_MARKER in page
    built = generator.on_page_markdown(page, None, None, None)
    assert generator.MARKER not in built and "`roi.tile_size_m`" in built
    assert generator.PROFILES_MARKER not in built and "profile: offline" in built  # demo.yaml, as shipped
    mkdocs = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace("!!python", "#"))
    assert "docs/gen_config.py" in mkdocs["hooks"] and mkdocs["strict"] is True
