"""Every setting does something: each field is read somewhere in the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import BaseModel

import roadparse
from roadparse.config import REMOVED_KEYS, Settings, load_settings

PACKAGE = Path(roadparse.__file__).parent


def _attributes_read() -> set[str]:
    """Returns every attribute name read anywhere in the package outside config.py."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
    return names


def _fields() -> list[str]:
    settings = Settings()
    fields = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            fields += [f"{name}.{sub}" for sub in type(value).model_fields]
        else:
            fields.append(name)
    return fields


@pytest.mark.parametrize("dotted", _fields())
def test_every_setting_is_read(dotted):
    """A field nobody reads changes fingerprints and misleads users: remove it or use it."""
    assert dotted.split(".")[-1] in _ATTRIBUTES, f"setting {dotted} is never read outside config.py"


_ATTRIBUTES = _attributes_read()


def test_removed_keys_are_dropped_with_a_warning(tmp_path, caplog):
    """settings.yaml files written by earlier versions still load."""
    path = tmp_path / "settings.yaml"
    path.write_text("seed: 3\npseudolabel:\n  ignore_index: 255\n  merge_map: m.yaml\n")
    settings = load_settings(path)
    assert settings.pseudolabel.merge_map == "m.yaml"
    assert sum("no longer used" in r.message for r in caplog.records) == len(REMOVED_KEYS)


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
