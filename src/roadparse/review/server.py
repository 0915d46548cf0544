"""The review web app: Flask, bound to 127.0.0.1, a random token required on every request.

Routes (all need ``?token=`` or the ``X-Review-Token`` header; anything else is 403):

- ``GET /`` the page; ``GET /static/<name>`` its script and style (a fixed list, no paths);
- ``GET /api/state`` clusters, members, classes, the suggestion and the saved choices;
- ``GET /api/member/<row>.jpg?view=context|crop`` one member; ``GET /api/tile/<row>.jpg`` its tile;
- ``POST /api/split`` ``{cluster, k}``; ``POST /api/preview`` and ``POST /api/save`` ``{clusters: ...}``
  (Save answers with ``next``: the exact shell command that continues the run).

Masks are addressed by their integer row in the assignments; no request value ever
becomes a file path.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from importlib import resources
from typing import Any

from flask import Flask, Response, abort, jsonify, request

from roadparse.artifacts import continue_command
from roadparse.locking import WorkdirBusy
from roadparse.merge_split import Split, check_sizes
from roadparse.review.choices import merge_map_text, parse_choices, save_merge_map
from roadparse.review.session import ReviewSession

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
_STATIC = {"review.js": "text/javascript", "review.css": "text/css"}
_LOCAL_ADDRESSES = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _asset(name: str) -> bytes:
    return resources.files("roadparse.review").joinpath("static", name).read_bytes()


def create_app(session: ReviewSession, token: str) -> Flask:
    """Returns the Flask app serving ``session``; every request must carry ``token``."""
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024

    @app.before_request
    def _guard() -> None:
        if request.remote_addr not in _LOCAL_ADDRESSES:
            abort(403)
        given = request.args.get("token") or request.headers.get("X-Review-Token") or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(403)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
        )
        if request.path.startswith("/api/member") or request.path.startswith("/api/tile"):
            response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @app.get("/")
    def page() -> Response:
        page_html = _asset("index.html").decode("utf-8").replace("{{TOKEN}}", token)
        return Response(page_html, mimetype="text/html")

    @app.get("/static/<name>")
    def static_file(name: str) -> Response:
        if name not in _STATIC:
            abort(404)
        return Response(_asset(name), mimetype=_STATIC[name])

    @app.get("/api/state")
    def state() -> Response:
        return jsonify(session.state())

    @app.get("/api/member/<int:row>.jpg")
    def member(row: int) -> Response:
        view = request.args.get("view", "context")
        if view not in ("context", "crop"):
            abort(400)
        try:
            return Response(session.member_jpeg(row, view), mimetype="image/jpeg")
        except IndexError:
            abort(404)

    @app.get("/api/tile/<int:row>.jpg")
    def tile(row: int) -> Response:
        try:
            return Response(session.tile_jpeg(row), mimetype="image/jpeg")
        except IndexError:
            abort(404)

    @app.post("/api/split")
    def split() -> Any:
        body = request.get_json(silent=True) or {}
        try:
            return jsonify(session.split(int(body["cluster"]), int(body["k"]), int(body.get("seed", 0))))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            return jsonify({"error": str(exc)}), 400

    @app.post("/api/preview")
    def preview() -> Any:
        body = request.get_json(silent=True)
        try:
            merge_map = _partial_choices(session, body)
            return jsonify(session.preview(merge_map))
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400

    @app.post("/api/save")
    def save() -> Any:
        body = request.get_json(silent=True)
        try:
            merge_map = parse_choices(body, session.n_clusters, session.classes)
            sizes = {c: int(n) for c, n in enumerate(session.sizes)}
            for cluster_id, value in merge_map.items():
                if isinstance(value, Split):
                    _check_split(session, cluster_id, value)
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400
        path = session.merge_map_path
        try:
            with session.workspace.lock():  # briefly: no command may be writing the work directory meanwhile
                backup = save_merge_map(path, merge_map_text(merge_map, session.classes, sizes))
        except WorkdirBusy as exc:
            return jsonify({"error": f"not saved: another roadparse command is writing {exc.root}: {exc.holder}; "
                                     "save again when it has finished"}), 409
        except ValueError as exc:  # the work directory cannot be written (named, with the fix)
            return jsonify({"error": f"not saved: {exc}"}), 500
        log.info("review: saved %s", path)
        return jsonify(
            {
                "path": str(path),
                "backup": str(backup) if backup else None,
                "next": [continue_command(session.workspace)],
            }
        )

    return app


def _partial_choices(session: ReviewSession, body: Any) -> dict[int, Any]:
    """Returns the page's choices as a merge map in which unassigned clusters are 'discard'."""
    clusters = dict((body or {}).get("clusters") or {})
    for cluster_id in range(session.n_clusters):
        clusters.setdefault(str(cluster_id), "discard")
    return parse_choices({"clusters": clusters}, session.n_clusters, session.classes)


def _check_split(session: ReviewSession, cluster_id: int, split: Split) -> None:
    """Raises ValueError when the page's split does not match the one pseudolabel will compute."""
    check_sizes(split, session.split_parts(cluster_id, split.k, split.seed), f"cluster {cluster_id}")


def new_token() -> str:
    """Returns a fresh random URL-safe token (128 bits)."""
    return secrets.token_urlsafe(16)


class ReviewServer:
    """The app on a werkzeug server at 127.0.0.1 (threaded), started in the background or in front."""

    def __init__(self, session: ReviewSession, port: int = 8765, token: str | None = None):
        """Binds 127.0.0.1:``port`` (0: any free port); raises OSError when the port is taken."""
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # request lines would print the token
        self.token = token or new_token()
        self._session = session
        self.app = create_app(session, self.token)
        self._server = make_server(HOST, port, self.app, threaded=True)
        self.port = int(self._server.server_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Returns the page's URL with the token."""
        return f"http://{HOST}:{self.port}/?token={self.token}"

    def warm(self) -> None:
        """Counts the preview's pixel coverage in the background, so the first preview is quick."""
        threading.Thread(target=self._session.coverages, daemon=True).start()

    def serve_forever(self) -> None:
        """Serves until interrupted (Ctrl-C) or :meth:`shutdown`."""
        self._server.serve_forever()

    def start(self) -> None:
        """Serves from a daemon thread (tests, notebooks)."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stops serving and closes the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
