"""Options and helpers shared by every subcommand."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from roadparse.config import ConfigError, Settings, dump_settings, load_settings
from roadparse.workspace import Workspace


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adds ``--config FILE`` and repeatable ``--set section.key=value`` to a command."""
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set masks.min_mask_area=2000 (repeatable)",
    )(func)
    func = click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="YAML settings file (see `roadparse config --defaults`)",
    )(func)
    return func


def resolve_settings(config_path: Path | None, overrides: tuple[str, ...], workdir: Path | None = None) -> Settings:
    """Returns settings from the config file (or WORKDIR/settings.yaml when none is given) and overrides."""
    if config_path is None and workdir is not None and (workdir / "settings.yaml").exists():
        config_path = workdir / "settings.yaml"
    try:
        return load_settings(config_path, list(overrides))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def open_workspace(workdir: Path, settings: Settings) -> Workspace:
    """Returns the workspace at ``workdir`` with the resolved settings recorded in it."""
    try:
        workspace = Workspace(workdir)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    workspace.write_settings(dump_settings(settings))
    return workspace


def setup_logging(verbose: int) -> None:
    """Sends library logging to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("urllib3", "PIL", "matplotlib", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def fail(message: str) -> None:
    """Exits with status 1 after printing one clear error line."""
    raise click.ClickException(message)
