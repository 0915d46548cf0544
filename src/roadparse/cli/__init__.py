"""The ``roadparse`` command line: one subcommand per stage, plus run / demo / status / config / review.

Each subcommand only parses arguments and calls its stage's ``run``; stage modules
are imported lazily so that one missing heavy backend never blocks the others.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from roadparse import __version__
from roadparse.cli.common import settings_kept_on_success, setup_logging
from roadparse.storage import is_environment_error, storage_message

_COMMANDS = {
    # name: (module, attribute); each command lives in the module of its name
    "init": ("roadparse.cli.init", "init_cmd"),
    "config": ("roadparse.cli.config", "config_cmd"),
    "status": ("roadparse.cli.status", "status_cmd"),
    "synth": ("roadparse.cli.synth", "synth_cmd"),
    "roi": ("roadparse.cli.roi", "roi_cmd"),
    "masks": ("roadparse.cli.masks", "masks_cmd"),
    "embed": ("roadparse.cli.embed", "embed_cmd"),
    "cluster": ("roadparse.cli.cluster", "cluster_cmd"),
    "pseudolabel": ("roadparse.cli.pseudolabel", "pseudolabel_cmd"),
    "review": ("roadparse.cli.review", "review_cmd"),
    "sweep": ("roadparse.cli.sweep", "sweep_cmd"),
    "selftrain": ("roadparse.cli.selftrain", "selftrain_cmd"),
    "predict": ("roadparse.cli.predict", "predict_cmd"),
    "export": ("roadparse.cli.export", "export_cmd"),
    "report": ("roadparse.cli.report", "report_cmd"),
    "compare": ("roadparse.cli.compare", "compare_cmd"),
    "evaluate": ("roadparse.cli.evaluate", "evaluate_cmd"),
    "run": ("roadparse.cli.run", "run_cmd"),
    "demo": ("roadparse.cli.demo", "demo_cmd"),
}
_ALIASES = {"train": "selftrain"}  # the stage's name before 0.2; still accepted


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd_name = _ALIASES.get(cmd_name, cmd_name)
        if cmd_name not in _COMMANDS:
            return None
        module_name, attribute = _COMMANDS[cmd_name]
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context) -> object:
        with settings_kept_on_success(ctx):  # a failed command leaves settings.yaml as it was
            try:
                return super().invoke(ctx)
            except OSError as exc:  # a full disk outside a stage's items (its manifest, a summary): one line too
                if not is_environment_error(exc):
                    raise
                where = Path(exc.filename).parent if exc.filename else Path.cwd()
                raise click.ClickException(storage_message(exc, where)) from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="roadparse")
@click.option("-v", "--verbose", count=True, help="more logging (-v info, -vv debug)")
def main(verbose: int) -> None:
    """roadparse: parse drone imagery of roads into per-pixel maps, without labels (COMRP)."""
    setup_logging(verbose)
