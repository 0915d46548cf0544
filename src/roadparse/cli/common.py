"""Options and helpers shared by every subcommand."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from roadparse.config import ConfigError, Settings, dump_settings, load_settings
from roadparse.summaries import SelftrainSummary
from roadparse.workspace import Workspace

WORKDIR = click.argument("workdir", type=click.Path(file_okay=False, path_type=Path))
LABELS_OPTION = click.option(
    "--labels",
    "labels_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="ground-truth label PNGs (<frame stem>.png or <tile id>.png), used to NAME clusters only",
)
PURITY_OPTION = click.option(
    "--min-purity",
    type=click.FloatRange(0, 1),
    default=None,
    help="below this majority share a cluster is 'discard' (default: cluster.min_purity)",
)


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


_WAIT = "roadparse.wait"
_RETRY_FAILED = "roadparse.retry_failed"


def _remember(key: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(context: click.Context, parameter: click.Parameter, value: bool) -> None:
        context.meta[key] = value

    return callback


def writer_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adds ``--wait`` and ``--retry-failed`` to a command that writes a work directory.

    Their values go to the context (read by :func:`open_workspace` and :func:`writer_workspace`),
    not to the command's arguments.
    """
    func = click.option(
        "--retry-failed", is_flag=True, expose_value=False, callback=_remember(_RETRY_FAILED),
        help="process again the items a finished stage recorded as failed (e.g. after fixing a frame)",
    )(func)
    func = click.option(
        "--wait", is_flag=True, expose_value=False, callback=_remember(_WAIT),
        help="when another command is writing WORKDIR, wait for it to end instead of failing",
    )(func)
    return func


def writer_workspace(workdir: Path) -> Workspace:
    """Returns the workspace at ``workdir`` with this command's writer lock held until the command ends
    (``--wait``: queue behind another writer) and ``--retry-failed`` applied.

    A busy or unwritable work directory exits with one line naming the holder or the fix.
    """
    context = click.get_current_context(silent=True)
    meta = context.meta if context is not None else {}
    try:
        workspace = Workspace(workdir, retry_failed=bool(meta.get(_RETRY_FAILED)))
        lock = workspace.lock(wait=bool(meta.get(_WAIT)))
    except ValueError as exc:
        fail(str(exc))
    if context is not None:  # released after the group has put back settings.yaml on failure
        context.find_root().with_resource(lock)
    return workspace


def resolve_settings(config_path: Path | None, overrides: tuple[str, ...], workdir: Path | None = None) -> Settings:
    """Returns settings from the config file (or WORKDIR/settings.yaml when none is given) and overrides."""
    if config_path is None and workdir is not None and (workdir / "settings.yaml").exists():
        config_path = workdir / "settings.yaml"
    try:
        return load_settings(config_path, list(overrides))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


_PREVIOUS_SETTINGS = "roadparse.previous_settings"


def open_workspace(workdir: Path, settings: Settings) -> Workspace:
    """Returns the workspace at ``workdir`` with the resolved settings recorded in it.

    The command holds the work directory's writer lock from here on (:func:`writer_workspace`).
    Should the command then fail, :func:`settings_kept_on_success` puts the previous
    ``settings.yaml`` back, so that a rejected override does not stick to the next run.
    An unwritable work directory exits with one line naming it and the fix.
    """
    workspace = writer_workspace(workdir)
    try:
        previous = workspace.read_settings()
        workspace.write_settings(dump_settings(settings))
    except ValueError as exc:
        fail(str(exc))
    context = click.get_current_context(silent=True)
    if context is not None:
        context.meta.setdefault(_PREVIOUS_SETTINGS, (workspace, previous))
    return workspace


@contextlib.contextmanager
def settings_kept_on_success(context: click.Context) -> Iterator[None]:
    """Runs a command; when it fails, restores the settings :func:`open_workspace` replaced and
    removes the stage folders it created and left empty.

    A kill or Ctrl-C keeps the new settings: the interrupted stage resumes with them.
    """
    try:
        yield
    except click.exceptions.Exit:
        raise
    except Exception:
        saved = context.meta.pop(_PREVIOUS_SETTINGS, None)
        if saved is not None:
            workspace, previous = saved
            with contextlib.suppress(OSError):
                workspace.restore_settings(previous)
            workspace.remove_empty_created()  # e.g. cluster/ of a clustering that was refused
        raise


def setup_logging(verbose: int) -> None:
    """Sends library logging to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("urllib3", "PIL", "matplotlib", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def fail(message: str) -> None:
    """Exits with status 1 after printing one clear error line."""
    raise click.ClickException(message)


def print_metrics(metrics: dict[str, dict[str, Any]], seconds: dict[str, float]) -> None:
    """Prints stage timings and one row per labelled set: IoU per class, mIoU, PA."""
    if seconds:
        click.echo("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    if not metrics:
        return
    names = list(next(iter(metrics.values()))["iou"])
    width = max(len(k) for k in metrics) + 2
    click.echo(f"{'':<{width}}" + "".join(f"{n[:12]:>13}" for n in names) + f"{'mIoU':>8}{'PA':>8}")
    for title, s in metrics.items():
        cells = "".join(f"{'-' if s['iou'][n] is None else format(s['iou'][n], '.2f'):>13}" for n in names)
        click.echo(f"{title:<{width}}{cells}{s['miou']:>8.2f}{s['pixel_accuracy']:>8.2f}")


def summary_lines(summary: SelftrainSummary) -> str:
    """Returns the verdict of a finished self-training stage and its per-class flags, for the terminal."""
    lines = [summary.get("verdict") or ""]
    for round_name, names in (summary.get("lost_classes") or {}).items():
        lines.append(f"WARNING: round {round_name} lost classes the pseudo-labels had (dev IoU >= 50 -> < 25): {', '.join(names)}")
    return "\n".join(line for line in lines if line)
