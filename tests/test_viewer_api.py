"""The viewer's JSON API over real HTTP: a server on a free port, called with urllib."""

from __future__ import annotations

import json
import shutil
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import duckdb
import numpy as np
import pytest
import simplejpeg

import tensorhouse as th
from tensorhouse.demo import build
from tensorhouse.format.chunks.codecs import encode_image, image_header_shape
from tensorhouse.synth import CLASSES
from tensorhouse.viewer import ViewerAPI, make_app
from tensorhouse.viewer.api import ApiError, Ref

GOLDEN = Path(__file__).parent / "golden" / "v1"


class Client:
    """GETs against a running viewer; answers (status, headers, body)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> tuple[int, Any, bytes]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        req = urllib.request.Request(
            self.url + path.lstrip("/") + ("?" + query if query else ""),
            method=method,
            headers=headers or {},
            data=b"x" if method in ("POST", "PUT") else None,
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def json(self, path: str, status: int = 200, /, **params: Any) -> Any:
        code, headers, body = self.get(path, **params)
        assert headers["Content-Type"] == "application/json", body
        doc = json.loads(body)
        assert code == status, doc
        return doc

    def error(self, path: str, status: int = 400, /, **params: Any) -> str:
        doc = self.json(path, status, **params)
        assert set(doc) == {"error"}
        return str(doc["error"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """v1: 20 rows, v2: 40 (tag 'first' = v1), v3: circles deleted, v4: score of triangles set to 0; branch 'exp'."""
    path = str(tmp_path_factory.mktemp("viewer-api") / "demo")
    ds = build(path, rows=40)
    ds.tag("first", 1)
    exp = ds.branch("exp")
    exp.append(
        {
            "image": [np.zeros((20, 30, 3), np.uint8)],
            "label": [2],
            "boxes": [np.zeros((0, 4), np.float32)],
            "embedding": np.zeros((1, 64), np.float32),
            "caption": ["branch row"],
            "score": np.ones(1, np.float32),
        }
    )
    ds.delete("label = 0")
    ds.update({"score": 0.0}, where="label = 2")
    return path


@pytest.fixture(scope="module")
def client(demo: str) -> Iterator[Client]:
    server = th.serve(demo, port=0, block=False)
    try:
        yield Client(server.url)
    finally:
        server.stop()


def table(uri: str, sql: str, **ref: Any) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    th.duckdb.register(con, "ds", uri, rowid=True, **ref)
    return con.sql(sql).fetchall()


# -- info ---------------------------------------------------------------------------------


def test_info(client: Client, demo: str) -> None:
    info = client.json("/api/info")
    assert info["version"] == info["latest_version"] == 4 and info["branch"] == "main"
    assert info["rows"] == len(th.open(demo)) and info["read_only"] is True
    assert info["versions"] == [0, 1, 2, 3, 4]
    assert [h["operation"] for h in info["history"]] == [
        "create",
        "append",
        "append",
        "delete",
        "update",
    ]
    assert [h["rows"] for h in info["history"]][:3] == [0, 20, 40]
    assert info["tags"] == [{"name": "first", "branch": "main", "version": 1}]
    assert info["branches"] == ["main", "exp"]
    kinds = {c["name"]: (c["kind"], c["label"]) for c in info["schema"]}
    assert kinds == {
        "image": ("image", "Image jpeg"),
        "label": ("label", "ClassLabel(3)"),
        "boxes": ("bbox", "BBox xyxy"),
        "embedding": ("vector", "Embedding float32[64]"),
        "caption": ("text", "Text"),
        "score": ("scalar", "float32"),
    }
    label = next(c for c in info["schema"] if c["name"] == "label")
    assert label["type"] == {"kind": "class_label", "classes": list(CLASSES)}


def test_info_at_a_version_tag_or_branch(client: Client) -> None:
    assert client.json("/api/info", version=1)["rows"] == 20
    tagged = client.json("/api/info", tag="first")
    assert (tagged["version"], tagged["rows"]) == (1, 20)
    exp = client.json("/api/info", branch="exp")
    assert (exp["branch"], exp["version"], exp["rows"]) == ("exp", 3, 41)
    assert exp["versions"] == [0, 1, 2, 3]
    client.error("/api/info", 404, version=99)
    assert "tag" in client.error("/api/info", 404, tag="nope")
    assert "branch" in client.error("/api/info", 404, branch="nope")
    assert "integer" in client.error("/api/info", 400, version="abc")


# -- rows -----------------------------------------------------------------------------------


def test_rows_where_filters_and_pages(client: Client, demo: str) -> None:
    expected = [
        r[0]
        for r in table(
            demo, "SELECT _rowid FROM ds WHERE label = 1 AND score > 0.2 ORDER BY _rowid"
        )
    ]
    assert expected, "the demo should have some matching rows"
    seen: list[int] = []
    for offset in range(0, len(expected) + 3, 3):
        page = client.json("/api/rows", where="label = 1 AND score > 0.2", offset=offset, limit=3)
        assert page["total"] == len(expected) and page["offset"] == offset and page["version"] == 4
        assert all(r["cells"]["label"] == {"index": 1, "name": CLASSES[1]} for r in page["rows"])
        seen += [r["_rowid"] for r in page["rows"]]
    assert seen == expected
    everything = client.json("/api/rows", limit=500)
    assert everything["total"] == len(everything["rows"]) == len(th.open(demo))


def test_rows_carry_light_cells_and_no_images(client: Client, demo: str) -> None:
    page = client.json("/api/rows", where="len(boxes) > 1", limit=5)
    ds = th.open(demo)
    for row in page["rows"]:
        want = ds.take_rowids([row["_rowid"]], columns=["boxes", "caption", "score", "embedding"])
        cells = row["cells"]
        assert set(cells) == {"label", "boxes", "embedding", "caption", "score"}  # no image
        assert cells["boxes"]["n"] == len(want["boxes"][0]) > 1
        assert np.allclose(cells["boxes"]["boxes"], want["boxes"][0], atol=0.01)
        assert cells["caption"] == want["caption"][0]
        assert cells["score"] == pytest.approx(float(want["score"][0]))
        emb = cells["embedding"]
        assert emb["n"] == 64 and len(emb["spark"]) == 64
        assert emb["min"] == pytest.approx(float(want["embedding"][0].min()), rel=1e-6)


def test_rows_full_select(client: Client, demo: str) -> None:
    sql = "SELECT _rowid, score * 2 AS double_score, caption FROM ds WHERE label <> 1 ORDER BY score DESC, _rowid;"
    want = table(demo, sql.rstrip(";"))
    page = client.json("/api/rows", sql=sql, limit=4, offset=2)
    assert page["total"] == len(want) and page["extras"] == [
        "double_score"
    ]  # caption is a dataset column
    assert [r["_rowid"] for r in page["rows"]] == [w[0] for w in want[2:6]]
    assert [r["extra"]["double_score"] for r in page["rows"]] == pytest.approx(
        [w[1] for w in want[2:6]]
    )
    # a join with tensor UDFs and a CTE are SELECTs too
    udf = client.json(
        "/api/rows",
        sql="WITH t AS (SELECT _rowid, num_boxes(boxes) AS n FROM ds) "
        "SELECT _rowid, n FROM t WHERE n >= 3 ORDER BY n DESC",
    )
    assert udf["rows"] and all(r["extra"]["n"] >= 3 for r in udf["rows"])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM glob('/etc/*')",
        "SELECT _rowid FROM ds, read_parquet('/tmp/*.parquet')",
        "COPY (SELECT 1) TO '/tmp/th_viewer_api_copy.csv'",
        "COPY ds TO '/tmp/th_viewer_api_copy.csv'",
        "ATTACH '/tmp/th_viewer_api.db' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "PRAGMA enable_profiling",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "CREATE TABLE t AS SELECT 1",
        "DROP VIEW ds",
        "SELECT _rowid FROM ds; DROP VIEW ds",
        "SELECT _rowid FROM ds; SELECT 1",
        "EXPLAIN ANALYZE SELECT 1",
        "CALL pragma_version()",
    ],
)
def test_only_a_single_read_only_select_runs(client: Client, sql: str) -> None:
    msg = client.error("/api/rows", sql=sql)
    assert any(
        s in msg
        for s in (
            "only SELECT",
            "only one statement",
            "disabled by configuration",
            "does not exist",
            "Catalog Error",
        )
    ), msg
    assert (
        not Path("/tmp/th_viewer_api_copy.csv").exists()
        and not Path("/tmp/th_viewer_api.db").exists()
    )
    assert client.json("/api/rows", limit=1)["total"] > 0  # ds is still there


@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ("label = 1; DROP VIEW ds", "only one statement"),
        ("1 = 1) UNION ALL (SELECT 5", "syntax error"),
        ("1 = 1) --", "syntax error"),
        ("no_such_column > 1", "no_such_column"),
        ("label = ", "syntax error"),
        ("caption = 1 +", "syntax error"),
        ("EXISTS (SELECT * FROM read_csv('/etc/passwd'))", "disabled by configuration"),
    ],
)
def test_bad_or_hostile_where_is_a_400(client: Client, where: str, needle: str) -> None:
    assert needle in client.error("/api/rows", where=where)


def test_bad_sql_and_parameters_are_400(client: Client) -> None:
    assert "syntax error" in client.error("/api/rows", sql="SELEC _rowid FROM ds")
    assert "_rowid" in client.error("/api/rows", sql="SELECT label FROM ds")
    assert "integer row ids" in client.error("/api/rows", sql="SELECT NULL::BIGINT AS _rowid")
    assert "not in this version" in client.error("/api/rows", sql="SELECT 123456789 AS _rowid")
    assert "not both" in client.error("/api/rows", where="label = 1", sql="SELECT _rowid FROM ds")
    assert "limit" in client.error("/api/rows", limit=0)
    assert "limit" in client.error("/api/rows", limit=100_000)
    assert "offset" in client.error("/api/rows", offset=-1)
    assert "integer" in client.error("/api/rows", offset="x")
    assert "empty" in client.error("/api/rows", sql="  ;  ")


def test_rows_of_other_versions_and_branches(client: Client, demo: str) -> None:
    assert client.json("/api/rows", version=1)["total"] == 20
    assert client.json("/api/rows", tag="first", where="label = 0")["total"] == len(
        table(demo, "SELECT 1 FROM ds WHERE label = 0", version=1)
    )
    exp = client.json("/api/rows", branch="exp", where="caption = 'branch row'")
    assert (
        exp["total"] == 1
        and exp["branch"] == "exp"
        and exp["rows"][0]["cells"]["label"]["name"] == "triangle"
    )
    assert client.json("/api/rows", where="label = 0")["total"] == 0  # deleted at v3


def test_a_runaway_query_is_interrupted(demo: str) -> None:
    api = ViewerAPI(demo, query_timeout_s=0.3, udfs=False)
    try:
        t0 = time.perf_counter()
        with pytest.raises(ApiError, match=r"ran longer than 0\.3 s"):
            api.rows(
                Ref(),
                sql="SELECT a._rowid FROM ds a, range(100000000) r WHERE hash(r.range + a._rowid) = 0",
            )  # not pushable: the full cross product
        assert time.perf_counter() - t0 < 10
        assert api.rows(Ref(), limit=1)["total"] > 0  # the pooled cursor still works
    finally:
        api.close()


# -- samples ----------------------------------------------------------------------------------


def test_sample_has_every_column(client: Client, demo: str) -> None:
    ds = th.open(demo)
    rowid = int(ds.take([3], columns=["_rowid"])["_rowid"][0])
    doc = client.json(f"/api/sample/{rowid}")
    assert doc["_rowid"] == rowid and doc["version"] == 4
    cols = {c["name"]: c for c in doc["columns"]}
    assert list(cols) == ds.columns
    raw = ds.take_rowids([rowid], decode=False)
    assert cols["image"]["value"] == {
        "shape": list(image_header_shape("jpeg", raw["image"][0])),
        "codec": "jpeg",
        "nbytes": len(raw["image"][0]),
    }
    assert cols["label"]["value"]["index"] == int(raw["label"][0])
    boxes = cols["boxes"]["value"]
    assert boxes["format"] == "xyxy" and boxes["shape"] == [len(raw["boxes"][0]), 4]
    assert np.allclose(boxes["boxes"], raw["boxes"][0], atol=1e-5)
    emb = cols["embedding"]["value"]
    assert emb["shape"] == [64] and emb["dtype"] == "float32" and not emb["truncated"]
    assert np.allclose(emb["values"], raw["embedding"][0], atol=1e-6)
    assert emb["stats"]["mean"] == pytest.approx(float(raw["embedding"][0].mean()), rel=1e-5)
    assert cols["caption"]["value"]["text"] == raw["caption"][0]


def test_unknown_rows_are_404(client: Client, demo: str) -> None:
    assert "not in this version" in client.error("/api/sample/999999999", 404)
    assert "integer" in client.error("/api/sample/abc", 404)
    deleted = table(demo, "SELECT _rowid FROM ds WHERE label = 0 LIMIT 1", version=2)[0][0]
    assert client.json(f"/api/sample/{deleted}", version=2)["_rowid"] == deleted
    client.error(f"/api/sample/{deleted}", 404)  # deleted at v3
    assert "no such" in client.error("/api/nothing", 404)


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    dst = tmp_path_factory.mktemp("golden") / "v1"
    shutil.copytree(GOLDEN, dst)
    server = th.serve(str(dst), port=0, block=False)
    try:
        yield Client(server.url)
    finally:
        server.stop()


def test_every_column_type_of_the_golden_dataset(golden: Client) -> None:
    page = golden.json("/api/rows")
    assert page["total"] == 3
    cells = [r["cells"] for r in page["rows"]]
    assert [c["flag"] for c in cells] == [True, False, None]
    assert [c["caption"] for c in cells] == ["zero", "ünï", None]
    assert [c["meta"] for c in cells] == ['{"a": 1}', "[1, 2]", None]
    assert cells[2]["boxes"] == {"n": 2, "boxes": [[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 5.0, 6.0]]}
    assert cells[0]["emb"]["spark"] == [1.0, 2.0, 3.0]
    assert "grid" not in cells[0] and "blob" not in cells[0] and "png" not in cells[0]
    kinds = {c["name"]: c["kind"] for c in golden.json("/api/info")["schema"]}
    assert kinds == {
        "label": "label",
        "score": "scalar",
        "flag": "scalar",
        "caption": "text",
        "meta": "json",
        "blob": "binary",
        "emb": "vector",
        "grid": "tensor",
        "ragged": "tensor",
        "boxes": "bbox",
        "png": "image",
    }
    code, headers, _ = golden.get(f"/api/thumbnail/{page['rows'][0]['_rowid']}/png", size=64)
    assert code == 200 and (headers["X-Image-Width"], headers["X-Image-Height"]) == ("6", "8")


def test_every_column_type_in_the_sample_view(golden: Client) -> None:
    page = golden.json("/api/rows")
    rowid = page["rows"][0]["_rowid"]
    cols = {c["name"]: c["value"] for c in golden.json(f"/api/sample/{rowid}")["columns"]}
    assert cols["grid"]["values"] == [[0, 1, 2], [3, 4, 5]] and cols["grid"]["dtype"] == "int16"
    assert cols["ragged"]["shape"] == [2, 2] and cols["ragged"]["stats"]["max"] == 1.0
    assert cols["blob"] == {"nbytes": 2, "hex": "00 01", "truncated": False}
    assert json.loads(cols["meta"]["text"]) == {"a": 1}
    assert cols["boxes"]["format"] == "xywh"
    assert cols["png"] == {"shape": [8, 6, 3], "codec": "png", "nbytes": cols["png"]["nbytes"]}
    third = page["rows"][2]["_rowid"]
    nulls = {c["name"]: c["value"] for c in golden.json(f"/api/sample/{third}")["columns"]}
    assert nulls["flag"] is None and nulls["caption"] is None and nulls["blob"] is None


# -- thumbnails ---------------------------------------------------------------------------------


def test_thumbnails(client: Client, demo: str) -> None:
    ds = th.open(demo)
    rowid = int(ds.take([0], columns=["_rowid"])["_rowid"][0])
    h, w, _ = image_header_shape(
        "jpeg", ds.take_rowids([rowid], ["image"], decode=False)["image"][0]
    )
    before = client.json("/api/health")["thumbnails"]
    code, headers, body = client.get(f"/api/thumbnail/{rowid}/image", size=64, version=4)
    assert code == 200 and headers["Content-Type"] == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    assert (int(headers["X-Image-Width"]), int(headers["X-Image-Height"])) == (w, h)
    assert "immutable" in headers["Cache-Control"]
    th_h, th_w, _, _ = simplejpeg.decode_jpeg_header(body)
    assert max(th_h, th_w) == 64 and abs(th_w / th_h - w / h) < 0.05
    assert client.get(f"/api/thumbnail/{rowid}/image", size=64, version=4)[2] == body
    after = client.json("/api/health")["thumbnails"]
    assert after["hits"] >= before["hits"] + 1 and after["entries"] >= 1
    big = client.get(f"/api/thumbnail/{rowid}/image", size=100_000)  # clamped, never upscaled
    assert big[0] == 200 and simplejpeg.decode_jpeg_header(big[2])[:2] == (h, w)
    assert "not an image" in client.error(f"/api/thumbnail/{rowid}/label", 400)
    assert "no column" in client.error(f"/api/thumbnail/{rowid}/nope", 404)
    assert "not in this version" in client.error("/api/thumbnail/999999999/image", 404)


def test_thumbnails_of_png_raw_and_alpha_images() -> None:
    ds = th.create(
        "memory://viewer-raw-images",
        {"raw": th.Image(None), "rgba": th.Image("png"), "gray": th.Image("jpeg")},
    )
    rng = np.random.default_rng(0)
    ds.append(
        {
            "raw": [rng.integers(0, 255, (300, 200, 3), np.uint8)],
            "rgba": [rng.integers(0, 255, (40, 50, 4), np.uint8)],
            "gray": [rng.integers(0, 255, (33, 77, 1), np.uint8)],
        }
    )
    with th.serve("memory://viewer-raw-images", port=0, block=False) as server:
        c = Client(server.url)
        for col, (w, h, ch) in {
            "raw": (200, 300, 3),
            "rgba": (50, 40, 4),
            "gray": (77, 33, 1),
        }.items():
            code, headers, body = c.get(f"/api/thumbnail/0/{col}", size=32)
            assert code == 200, body
            assert (
                headers["X-Image-Width"],
                headers["X-Image-Height"],
                headers["X-Image-Channels"],
            ) == (str(w), str(h), str(ch))
            assert max(simplejpeg.decode_jpeg_header(body)[:2]) == 32


# -- diff --------------------------------------------------------------------------------------


def test_diff_of_versions(client: Client, demo: str) -> None:
    circles = len(table(demo, "SELECT 1 FROM ds WHERE label = 0", version=2))
    added = client.json("/api/diff", **{"from": 1, "to": 2, "kind": "added", "limit": 500})
    assert added["counts"] == {"added": 20, "removed": 0, "changed": 0}
    assert [r["_rowid"] for r in added["rows"]] == [
        r[0] for r in table(demo, "SELECT _rowid FROM ds ORDER BY 1", version=2)[20:]
    ]
    removed = client.json("/api/diff", **{"from": 2, "to": 4, "kind": "removed"})
    triangles = table(demo, "SELECT count(*) FROM ds WHERE label = 2 AND score <> 0", version=2)[0][
        0
    ]
    assert removed["counts"] == {"added": 0, "removed": circles, "changed": triangles}
    assert removed["version"] == 2 and all(
        r["cells"]["label"]["index"] == 0 for r in removed["rows"]
    )
    changed = client.json("/api/diff", **{"from": 3, "kind": "changed"})  # to: the default (v4)
    assert changed["total"] == triangles and all(
        r["cells"]["score"] == 0.0 for r in changed["rows"]
    )
    assert changed["compared_columns"] == ["label", "boxes", "embedding", "caption", "score"]
    assert "from=" in client.error("/api/diff")
    assert "kind" in client.error("/api/diff", **{"from": 1, "kind": "moved"})


def test_diff_reports_schema_changes() -> None:
    ds = th.create("memory://viewer-diff-schema", {"x": "int64", "old": th.Text()})
    ds.append({"x": [1, 2], "old": ["a", "b"]})
    ds.add_column("new", "float32", [0.5, 0.25])
    ds.drop_column("old")
    doc = ViewerAPI("memory://viewer-diff-schema", udfs=False).diff(
        Ref(version=1), Ref(), kind="changed"
    )
    assert doc["schema"] == {"added": ["new"], "removed": ["old"], "changed": []}
    assert doc["counts"] == {"added": 0, "removed": 0, "changed": 0} and doc[
        "compared_columns"
    ] == ["x"]


# -- HTTP, safety -------------------------------------------------------------------------------


def test_page_and_static_files(client: Client) -> None:
    code, headers, body = client.get("/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    page = body.decode()
    assert (
        '<script src="/static/app.js"' in page and "<script>" not in page and "style=" not in page
    )
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        code, headers, body = client.get(f"/static/{name}")
        assert code == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000
    assert "innerHTML" not in client.get("/static/app.js")[2].decode()
    assert client.get("/static/../api.py")[0] == 404
    assert client.get("/static/%2e%2e/api.py")[0] == 404
    assert client.get("/favicon.ico")[0] == 204


def test_read_only_and_loopback_only(client: Client) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        code, headers, body = client.get("/api/rows", method=method)
        assert code == 405 and headers["Allow"] == "GET, HEAD" and b"read-only" in body
    assert client.get("/api/info", headers={"Host": "attacker.example"})[0] == 403  # DNS rebinding
    assert client.get("/api/info", headers={"Host": "localhost:1234"})[0] == 200
    code, _, body = client.get("/api/info", method="HEAD")
    assert code == 200 and body == b""


def test_default_version_follows_the_latest_unless_pinned() -> None:
    ds = th.create("memory://viewer-follow", {"x": "int64"})
    ds.append({"x": [1]})
    with (
        th.serve("memory://viewer-follow", port=0, block=False) as live,
        th.serve("memory://viewer-follow", port=0, block=False, version=1) as pinned,
    ):
        a, b = Client(live.url), Client(pinned.url)
        ds.append({"x": [2, 3]})
        assert a.json("/api/info")["rows"] == 3 and a.json("/api/rows")["total"] == 3
        assert b.json("/api/info")["rows"] == 1 and b.json("/api/info")["latest_version"] == 2


def test_non_finite_numbers_are_valid_json() -> None:
    ds = th.create("memory://viewer-nan", {"v": "float64", "e": th.Embedding(3)})
    ds.append({"v": [np.nan, np.inf], "e": np.array([[np.nan, 1, -np.inf], [0, 0, 0]], np.float32)})
    api = ViewerAPI("memory://viewer-nan", udfs=False)
    page = json.loads(json.dumps(api.rows(Ref()), allow_nan=False))
    assert [r["cells"]["v"] for r in page["rows"]] == ["NaN", "Infinity"]
    detail = api.sample(Ref(), 0)["columns"][1]["value"]
    assert detail["values"] == ["NaN", 1.0, "-Infinity"] and detail["stats"]["nan"] == 1
    api.close()


def test_concurrent_requests(client: Client, demo: str) -> None:
    rowids = [r[0] for r in table(demo, "SELECT _rowid FROM ds ORDER BY 1 LIMIT 12")]
    errors: list[str] = []

    def work(i: int) -> None:
        for path, params in (
            ("/api/rows", {"where": f"score > {i / 20}", "limit": 5}),
            (f"/api/thumbnail/{rowids[i]}/image", {"size": 48 + i}),
            (f"/api/sample/{rowids[i]}", {}),
        ):
            code, _, body = client.get(path, **params)
            if code != 200:
                errors.append(f"{path}: {code} {body[:200]!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_wsgi_app_and_th_serve() -> None:
    th.create("memory://viewer-wsgi", {"x": "int64"}).append({"x": [1, 2]})
    app = make_app("memory://viewer-wsgi", udfs=False)
    env: dict[str, Any] = {"PATH_INFO": "/api/rows", "QUERY_STRING": "where=x%3E1"}
    setup_testing_defaults(env)
    got: list[Any] = []
    body = b"".join(app(env, lambda status, headers: got.append((status, headers))))
    assert got[0][0] == "200 OK" and json.loads(body)["total"] == 1
    app.close()
    from tensorhouse.viewer import serve

    assert th.serve is serve


# -- latency ------------------------------------------------------------------------------------


def scalar_dataset(path: str, rows: int) -> str:
    """Small scalar columns and a tiny JPEG per row."""
    rng = np.random.default_rng(1)
    ds = th.create(
        path,
        {
            "image": th.Image("jpeg"),
            "label": th.ClassLabel(["cat", "dog", "bird"]),
            "score": "float32",
            "n": "int64",
            "caption": th.Text(),
        },
    )
    tiny = encode_image("jpeg", np.full((8, 8, 3), 120, np.uint8))
    ds.append(
        {
            "image": [tiny] * rows,
            "label": rng.integers(0, 3, rows),
            "score": rng.random(rows, np.float32),
            "n": np.arange(rows),
            "caption": [f"row {i}" for i in range(rows)],
        }
    )
    return path


def page_latencies(uri: str, rows: int) -> dict[str, float]:
    """Median seconds per /api/rows request of a few kinds, over HTTP."""
    queries: dict[str, dict[str, Any]] = {
        "first page": {},
        "last page": {"offset": rows - 48},
        "filtered deep page": {"where": "label = 1 AND score > 0.5", "offset": rows // 10},
        "full select ordered": {
            "sql": "SELECT _rowid, n FROM ds ORDER BY score DESC",
            "offset": rows // 2,
        },
    }
    out = {}
    with th.serve(uri, port=0, block=False) as server:
        c = Client(server.url)
        for name, params in queries.items():
            times = []
            for i in range(4):
                t0 = time.perf_counter()
                page = c.json(
                    "/api/rows", **params, limit=48 - i
                )  # a new count-free query each time
                times.append(time.perf_counter() - t0)
                assert len(page["rows"]) == 48 - i or name == "filtered deep page"
            out[name] = statistics.median(times)
    return out


def test_rows_pages_over_http_10k(tmp_path: Path) -> None:
    # Correctness of each page kind only: their latency (the 0.5 s target) is measured side by side with
    # plain DuckDB in benchmarks/bench_viewer.py, not asserted here (a timed test fails on a busy machine).
    lat = page_latencies(scalar_dataset(str(tmp_path / "s10k"), 10_000), 10_000)
    assert set(lat) == {"first page", "last page", "filtered deep page", "full select ordered"}
