"""A browser viewer for tensorhouse datasets: look at samples, filter them with SQL, compare versions.

``th.serve(uri)`` starts a local web server (standard library only) whose
page shows a grid of samples: image thumbnails with their boxes and class
names drawn over them, other tensors by shape and dtype (a sparkline for
vectors), a SQL ``WHERE`` box (or a full ``SELECT`` over the table ``ds``)
run by DuckDB, a version/tag/branch selector, a detail view of every column,
the schema, the history, and a diff of two versions. It only reads: DuckDB
runs with external access off and accepts a single SELECT.
The JSON API and the design are in ``docs/viewer.md``.

Example:
    >>> import json, urllib.request, tensorhouse as th
    >>> from tensorhouse.demo import build
    >>> _ = build("memory://doc-viewer", rows=8)
    >>> server = th.serve("memory://doc-viewer", port=0, block=False)
    >>> page = json.load(urllib.request.urlopen(server.url + "api/rows?where=label%20%3D%201"))
    >>> all(r["cells"]["label"]["name"] == "square" for r in page["rows"])
    True
    >>> server.stop()
"""

from __future__ import annotations

from tensorhouse.viewer.api import ApiError, Ref, ViewerAPI
from tensorhouse.viewer.server import ViewerApp, ViewerServer, make_app, serve
from tensorhouse.viewer.thumbnails import ThumbnailCache, make_thumbnail

__all__ = [
    "ApiError",
    "Ref",
    "ThumbnailCache",
    "ViewerAPI",
    "ViewerApp",
    "ViewerServer",
    "make_app",
    "make_thumbnail",
    "serve",
]
