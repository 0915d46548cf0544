"""The configuration reference, rendered from ``roadparse.config.Settings`` (the one source of truth).

Used two ways:

- as an MkDocs hook (``hooks:`` in ``mkdocs.yml``): every build replaces the marker line
  ``<!-- settings-reference -->`` in ``configuration.md`` with the tables, so the page can never
  be stale;
- as a script: ``python docs/gen_config.py`` prints the same Markdown.

The marker ``<!-- profiles -->`` is replaced the same way by the shipped profile files, as they are.

Each field is rendered with its dotted name, its default, its unit and its description (the
field's ``description=``). Units follow from the field's name (``_m``, ``_cm``, ``_cm2``,
``_mb``; a GSD is cm/px) or, for pixel and count settings, from ``PIXEL_FIELDS`` below.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

MARKER = "<!-- settings-reference -->"
PROFILES_MARKER = "<!-- profiles -->"
TABLE_HEAD = "| setting | type | default | unit | meaning |\n|---|---|---|---|---|"

PIXEL_FIELDS = frozenset({
    "roi.long_side", "roi.tile_size", "roi.tile_overlap",
    "masks.min_mask_area", "masks.offline_sigma", "masks.offline_min_size",
    "embed.crop_size", "selftrain.crop_size", "selftrain.scale_range", "predict.window",
})
"""Settings in pixels whose names do not say so (their physical twins end in ``_m``/``_cm``/``_cm2``)."""

PIXEL_AREA_FIELDS = frozenset({"masks.min_mask_area", "masks.offline_min_size"})
"""Of ``PIXEL_FIELDS``, those that are areas (px², written px as the rest of the docs do)."""


def unit_of(dotted: str) -> str:
    """Returns the unit of the setting ``dotted`` (``section.name``) for the reference, or ``""`` when it has none."""
    name = dotted.rsplit(".", 1)[-1]
    if "gsd_cm" in name:
        return "cm/px"
    if name.endswith("_cm2"):
        return "cm²"
    if name.endswith("_cm"):
        return "cm"
    if name.endswith("_m"):
        return "m"
    if name.endswith("_mb"):
        return "MB"
    if dotted in PIXEL_FIELDS:
        return "px"
    return ""


def type_text(annotation: Any) -> str:
    """Returns a short reader's form of a field's type: ``int``, ``'a' | 'b'``, ``float or null``, ``list of int``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return type_text(get_args(annotation)[0])
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        text = " or ".join(type_text(arg) for arg in options)
        return f"{text} or null" if len(options) < len(get_args(annotation)) else text
    if origin in (list, tuple):
        args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
        inner = " and ".join(dict.fromkeys(type_text(arg) for arg in args))
        return f"{origin.__name__} of {inner}" if inner else origin.__name__
    return getattr(annotation, "__name__", str(annotation))


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_reference() -> str:
    """Returns the Markdown reference of every setting: one table per section, in ``Settings`` order."""
    from roadparse.config import Settings

    defaults = Settings()
    top_rows: list[str] = []
    sections: list[str] = []
    for name, field in Settings.model_fields.items():
        value = getattr(defaults, name)
        if not isinstance(value, BaseModel):
            top_rows.append(
                f"| `{name}` | {type_text(field.annotation)} | {_default_text(value)} | {unit_of(name)} "
                f"| {_cell(field.description or '')} |"
            )
            continue
        section_type = type(value)
        doc = (section_type.__doc__ or "").strip().splitlines()[0]
        execution_only = getattr(section_type, "execution_only", frozenset())
        rows = [f"### `{name}`", "", doc, "", TABLE_HEAD]
        for sub_name, sub_field in section_type.model_fields.items():
            dotted = f"{name}.{sub_name}"
            meaning = _cell(sub_field.description or "")
            if sub_name in execution_only:
                meaning += " *(execution only: not in the stage fingerprint)*"
            rows.append(
                f"| `{dotted}` | {type_text(sub_field.annotation)} | {_default_text(getattr(value, sub_name))} "
                f"| {unit_of(dotted)} | {meaning} |"
            )
        sections.append("\n".join(rows))
    header = ["### Top level", "", TABLE_HEAD, *top_rows]
    return "\n\n".join(["\n".join(header), *sections]) + "\n"


def profiles_reference() -> str:
    """Returns each shipped profile (``roadparse.config.PROFILES``) as a section with its commented YAML file."""
    from roadparse.config import PROFILES, profile_text

    sections = []
    for name in PROFILES:
        sections.append(f"### `{name}`\n\n```yaml\n{profile_text(name).rstrip()}\n```")
    return "\n\n".join(sections) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: fills the settings reference and the profiles into the page that holds their markers."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, settings_reference())
    if PROFILES_MARKER in markdown:
        markdown = markdown.replace(PROFILES_MARKER, profiles_reference())
    return markdown


if __name__ == "__main__":
    print(settings_reference(), end="")
