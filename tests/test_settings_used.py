"""Every setting does something: each field is read by the package under its own section.

A field counts as read when the code reads ``<settings>.<section>.<field>`` or ``<var>.<field>``
where ``<var>`` holds that section: a parameter, variable or class field annotated with the
section's class, a variable assigned ``<anything>.<section>``, or the result of a function
annotated to return the section. A field of the same name in another section does not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import roadparse
from roadparse.config import REMOVED_KEYS, Settings, load_settings

PACKAGE = Path(roadparse.__file__).parent
ROOT = ""
"""The section name of the top-level ``Settings`` (its own fields, e.g. ``classes``)."""
SECTION_OF_CLASS = {"Settings": ROOT} | {
    type(value).__name__: name for name, value in Settings() if isinstance(value, BaseModel)
}
"""Settings class name -> section name."""
SECTIONS = set(SECTION_OF_CLASS.values()) - {ROOT}


def _annotated_section(annotation: ast.expr | None) -> str | None:
    """Returns the section whose class an annotation names (``MasksSettings``, ``MasksSettings | None``, "..."), or None."""
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    for node in ast.walk(annotation):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if name in SECTION_OF_CLASS:
            return SECTION_OF_CLASS[name]
    return None


def _target(node: ast.expr) -> str | None:
    """Returns ``x`` for a name ``x`` and ``self.x`` for an attribute of a name: the keys that hold sections."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


class _Reads:
    """The (section, field) pairs one package reads."""

    def __init__(self, trees: list[ast.Module]):
        self.trees = trees
        self.returns = {  # functions (and methods) annotated to return a section
            node.name: section
            for tree in trees
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and (section := _annotated_section(node.returns)) is not None
        }
        self.pairs: set[tuple[str, str]] = set()
        for tree in trees:
            self._module(tree)

    def _section_of(self, node: ast.expr, bound: dict[str, str]) -> str | None:
        """Returns the section an expression holds, or None."""
        key = _target(node)
        if key is not None and key in bound:
            return bound[key]
        if isinstance(node, ast.Attribute) and node.attr in SECTIONS:
            return node.attr  # settings.masks, self.settings.masks, run.settings.masks ...
        if isinstance(node, ast.Name | ast.Attribute) and (node.id if isinstance(node, ast.Name) else node.attr) == "settings":
            return bound.get(key or "", ROOT)  # a Settings object by name, unless annotated otherwise
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name == "model_copy" and isinstance(func, ast.Attribute):
                return self._section_of(func.value, bound)
            return self.returns.get(name or "")
        return None

    def _module(self, tree: ast.Module) -> None:
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                self._class(node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._function(node, {})

    def _class(self, node: ast.ClassDef) -> None:
        own = SECTION_OF_CLASS.get(node.name)
        fields = {}
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                section = _annotated_section(item.annotation)
                if section is not None and own is None:
                    fields[f"self.{item.target.id}"] = section
        for item in node.body:  # self.x = <a section> in a method (__init__): a field holding it
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and own is None:
                fields |= {key: section for key, section in self._bindings(item, {}).items() if key.startswith("self.")}
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                if own is not None and (item.decorator_list or item.name == "identity"):
                    continue  # validators and fingerprints read every field: no use of their own
                self._function(item, {**fields, **({"self": own} if own is not None else {})})
            elif isinstance(item, ast.ClassDef):
                self._class(item)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, inherited: dict[str, str]) -> None:
        bound = self._bindings(node, inherited)
        for child in _own_nodes(node):
            if isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Load):
                section = self._section_of(child.value, bound)
                if section is not None:
                    self.pairs.add((section, child.attr))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                self._function(child, bound)  # closures see the enclosing bindings

    def _bindings(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, inherited: dict[str, str]) -> dict[str, str]:
        """Returns name (or ``self.x``) -> section for the parameters and assignments of a function, and ``inherited``."""
        bound = dict(inherited)
        arguments = node.args
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
            section = _annotated_section(argument.annotation)
            if section is not None:
                bound[argument.arg] = section
        for child in _own_nodes(node):  # bindings first, in source order
            if isinstance(child, ast.Assign):
                section = self._section_of(child.value, bound)
                for target in child.targets:
                    if (key := _target(target)) is not None and section is not None:
                        bound[key] = section
            elif isinstance(child, ast.AnnAssign) and (key := _target(child.target)) is not None:
                section = _annotated_section(child.annotation)
                if section is None and child.value is not None:
                    section = self._section_of(child.value, bound)
                if section is not None:
                    bound[key] = section
        return bound


def _own_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Yields the nodes of a function's body, nested functions themselves but not their insides."""
    stack = list(reversed(list(ast.iter_child_nodes(node))))
    while stack:
        child = stack.pop()
        yield child
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(reversed(list(ast.iter_child_nodes(child))))


def _package_reads() -> set[tuple[str, str]]:
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))]
    return _Reads(trees).pairs


def _fields() -> list[str]:
    fields = []
    for name, value in Settings():
        if isinstance(value, BaseModel):
            fields += [f"{name}.{sub}" for sub in type(value).model_fields]
        else:
            fields.append(name)
    return fields


_READS = _package_reads()


@pytest.mark.parametrize("dotted", _fields())
def test_every_setting_is_read_under_its_own_section(dotted: str) -> None:
    """A field nobody reads changes fingerprints and misleads users: remove it or use it."""
    section, _, field = dotted.rpartition(".")
    assert (section, field) in _READS, f"setting {dotted} is never read as {dotted} by the package"


def test_the_scan_tells_sections_apart() -> None:
    """A read of ``masks.device`` is not a read of ``embed.device``; reads through annotated and assigned names count."""
    source = '''
def f(settings: Settings, masks: MasksSettings) -> None:
    cfg = settings.embed
    train = resolve(settings)
    print(settings.roi.mode, masks.generator, cfg.encoder, train.lr, settings.classes)

def resolve(settings: Settings) -> SelftrainSettings:
    return settings.selftrain

class Task:
    settings: PredictSettings

    def load(self) -> None:
        print(self.settings.window)

class Finder:
    def __init__(self, settings: RoiSettings):
        self.settings = settings

    def find(self) -> None:
        settings = self.settings
        print(settings.prompt)
'''
    reads = _Reads([ast.parse(source)]).pairs
    assert reads == {("roi", "mode"), ("masks", "generator"), ("embed", "encoder"), ("selftrain", "lr"), (ROOT, "classes"),
                     (ROOT, "roi"), (ROOT, "embed"), (ROOT, "selftrain"), ("predict", "window"), ("roi", "prompt")}
    assert ("embed", "generator") not in reads and ("masks", "encoder") not in reads


def test_removed_keys_are_dropped_with_one_warning(tmp_path, caplog) -> None:
    """settings.yaml files written by earlier versions still load, with one warning naming what they set that is gone."""
    path = tmp_path / "settings.yaml"
    path.write_text(
        "seed: 3\npseudolabel:\n  ignore_index: 255\n  merge_map: m.yaml\n"
        "masks:\n  offline_lines: true\n  merge_across_tiles: false\n"
        "selftrain:\n  crop_sampling: uniform\n  scale_factor_range: null\n  lr: 0.5\n"
    )
    settings = load_settings(path)
    assert settings.pseudolabel.merge_map == "m.yaml" and settings.selftrain.lr == 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    for key in ("seed", "pseudolabel.ignore_index", "masks.offline_lines", "masks.merge_across_tiles",
                "selftrain.crop_sampling", "selftrain.scale_factor_range"):
        assert f"  {key}: " in warnings[0], key
    assert "masks.offline_lines: an experiment" in warnings[0] and "set to true here" in warnings[0]
    assert "merge_across_tiles: an experiment that no profile used, removed with its code (docs/experiments.md)\n" in warnings[0]


def test_every_removed_key_is_gone_from_the_settings() -> None:
    for path in REMOVED_KEYS:
        node = Settings.model_fields
        for part in path[:-1]:
            node = node[part].annotation.model_fields  # type: ignore[union-attr]
        assert path[-1] not in node, path


def test_a_removed_key_given_as_override_is_an_error() -> None:
    from roadparse.config import ConfigError

    with pytest.raises(ConfigError, match=r"--set masks.offline_lines: no longer a setting .*docs/experiments.md"):
        load_settings(None, ["masks.offline_lines=true"])


def test_old_section_name_train_is_read_as_selftrain(tmp_path, caplog):
    """Configs written before the rename still work, and --set overrides win over the file."""
    path = tmp_path / "old.yaml"
    path.write_text("train:\n  iterations: 7\n  lr: 0.5\n")
    settings = load_settings(path, ["selftrain.lr=0.25"])
    assert settings.selftrain.iterations == 7 and settings.selftrain.lr == 0.25
    assert any("now called 'selftrain'" in r.message for r in caplog.records)


def test_train_command_is_an_alias_of_selftrain():
    from click.testing import CliRunner

    from roadparse.cli import main

    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0 and "Self-train a segmenter" in result.output
