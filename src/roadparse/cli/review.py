"""CLI: ``roadparse review WORKDIR [--port 8765]``, the merge map made in a browser."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import config_options, fail, resolve_settings


@click.command("review")
@click.argument("workdir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="port on 127.0.0.1 (0: any free port)")
@click.option("--window-m", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="ground size of the context window around each mask, metres (at each tile's GSD from roi; "
                   "predict.gsd_cm for runs that recorded none)")
@click.option("--members", type=click.IntRange(2, 64), default=16, show_default=True,
              help="members shown per cluster: half typical, half random")
@config_options
def review_cmd(
    workdir: Path,
    port: int,
    window_m: float,
    members: int,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Review WORKDIR's clusters in a browser and save WORKDIR/merge_map.yaml.

    \b
    Serves a page on 127.0.0.1 only; open the printed URL (it holds a random token that
    every request must carry). Keys: 1-7 class, d discard, Enter accept the suggestion,
    j/k next/previous, s split, v context/crop, Ctrl+S save. Ctrl-C stops the server.
    """
    from roadparse.artifacts import continue_command
    from roadparse.review.choices import saves_finish_on_exit
    from roadparse.review.server import ReviewServer
    from roadparse.review.session import ReviewOptions, ReviewSession
    from roadparse.workspace import Workspace

    settings = resolve_settings(config_path, overrides, workdir)
    try:
        session = ReviewSession(Workspace(workdir), settings, ReviewOptions(window_m=window_m, members=members))
        server = ReviewServer(session, port)
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc}; choose another with --port")
    click.echo(f"{session.n_clusters} clusters of {len(session.clusters)} masks in {workdir}")
    click.echo(f"open: {server.url}")
    click.echo("Ctrl-C stops the server; Save in the page writes " + str(session.merge_map_path))
    click.echo(f"then continue: {continue_command(session.workspace)}")
    server.warm()
    try:
        with saves_finish_on_exit():  # SIGTERM as Ctrl-C; a save in progress ends whole, its temporary file removed
            server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
