"""Hostile API input: predicates, appends, viewer queries. A typed error every time, bounded memory."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import numpy as np
import pytest
from hostile import run_isolated

import tensorhouse as th
from tensorhouse import limits
from tensorhouse.errors import SchemaError, TensorhouseError
from tensorhouse.format.chunks.codecs import encode_image
from tensorhouse.format.predicate import PredicateError


def numbers(uri: str) -> th.Dataset:
    ds = th.create(uri, {"id": "int64", "score": "float32"})
    ds.append({"id": np.arange(100), "score": np.linspace(0, 1, 100, dtype="float32")})
    return ds


def huge_jpeg(h: int, w: int) -> bytes:
    """A valid 8x8 JPEG whose frame header claims ``h`` x ``w`` pixels (634 bytes)."""
    jpg = bytearray(encode_image("jpeg", np.zeros((8, 8, 3), np.uint8)))
    i = jpg.find(b"\xff\xc0")
    jpg[i + 5 : i + 7] = h.to_bytes(2, "big")
    jpg[i + 7 : i + 9] = w.to_bytes(2, "big")
    return bytes(jpg)


# -- predicates -----------------------------------------------------------------------


def test_ten_thousand_ors_run_in_a_subprocess() -> None:
    # Once a segfault inside Arrow: a subprocess makes a crash fail this test, not the run.
    res = run_isolated(
        """
        import tensorhouse as th, numpy as np
        ds = th.create("memory://ors", {"id": "int64"})
        ds.append({"id": np.arange(100)})
        ds.delete(where=" OR ".join(["id = 1"] * 10000))
        ds.delete(where=" OR ".join(f"id = {i}" for i in range(10, 5010)))
        print("rows left", len(ds))
    """,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "rows left 9\n" in res.stdout  # 0..9 without 1


def test_many_distinct_terms_hit_the_term_limit(tmp_path: Path) -> None:
    ds = numbers(f"memory://{tmp_path.name}-terms")
    where = " OR ".join(f"(id = {i} AND score > 0)" for i in range(5000))
    with pytest.raises(PredicateError, match="max_predicate_terms"):
        ds.delete(where=where)


@pytest.mark.parametrize(
    ("where", "pattern"),
    [
        ("(" * 2000 + "id = 1" + ")" * 2000, "max_predicate_depth"),
        ("NOT " * 5000 + "id = 1", "max_predicate_depth"),
        ("id = " + " + ".join(["1"] * 3000), "max_predicate_depth"),
        ("id = 12345678901234567890123", "out of range"),
        ("id", "not a condition"),
        ("id + 1", "not a condition"),
        ("score * 2", "not a condition"),
        ("id = 'x' AND", "expected"),
        ("x" * 2_000_000, "max_predicate_chars"),
    ],
)
def test_bad_predicates_are_predicate_errors(tmp_path: Path, where: str, pattern: str) -> None:
    ds = numbers(f"memory://{tmp_path.name}")
    with pytest.raises(PredicateError, match=pattern):
        ds.delete(where=where)
    assert len(ds) == 100  # and nothing was deleted


def test_predicate_depth_limit_is_configurable(tmp_path: Path) -> None:
    ds = numbers(f"memory://{tmp_path.name}")
    where = "(" * 70 + "id = 1" + ")" * 70
    with pytest.raises(PredicateError):
        ds.delete(where=where)
    with limits.override(max_predicate_depth=80):
        ds.delete(where=where)
    assert len(ds) == 99


def test_remainder_still_works_and_an_int64_overflow_is_typed(tmp_path: Path) -> None:
    ds = numbers(f"memory://{tmp_path.name}")
    ds.delete(where="id % 10 = 3 OR id % 10 = -3")
    assert len(ds) == 90
    with pytest.raises(PredicateError):
        ds.delete(where="id = 18446744073709551615")  # fits uint64, not the int64 column


# -- appends ----------------------------------------------------------------------------


def test_zero_row_append_is_not_a_dtype_error(tmp_path: Path) -> None:
    ds = th.create(
        f"memory://{tmp_path.name}", {"e": th.Embedding(4), "l": th.ClassLabel(["a", "b"])}
    )
    ds.append({"e": [], "l": []})
    ds.append([])
    assert len(ds) == 0


@pytest.mark.parametrize("data", [[1, 2], "abc", None, [{"id": 1}, 2]])
def test_malformed_append_data_is_a_schema_error(tmp_path: Path, data: object) -> None:
    ds = numbers(f"memory://{tmp_path.name}")
    with pytest.raises(SchemaError):
        ds.append(data)  # type: ignore[arg-type]


def test_deep_json_value_is_a_schema_error(tmp_path: Path) -> None:
    ds = th.create(f"memory://{tmp_path.name}", {"j": th.Json()})
    deep: object = 0
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(SchemaError, match="column 'j', row 0"):
        ds.append({"j": [deep]})


def test_jpeg_claiming_65000_squared_is_refused_at_append(tmp_path: Path) -> None:
    ds = th.create(f"memory://{tmp_path.name}", {"img": th.Image("jpeg")})
    with pytest.raises(SchemaError, match=r"65000x65000.*max_image_pixels"):
        ds.append({"img": [huge_jpeg(65000, 65000)]})
    assert len(ds) == 0
    # A big but real size passes when the limit is raised (the slide-scanner case).
    with limits.override(max_image_pixels=65000 * 65000):
        ds.append({"img": [huge_jpeg(65000, 65000)]})
    assert len(ds) == 1


def test_value_over_the_limit_is_refused_at_append(tmp_path: Path) -> None:
    ds = th.create(f"memory://{tmp_path.name}", {"b": th.Binary()})
    with (
        limits.override(max_value_bytes=1000),
        pytest.raises(SchemaError, match=r"row 1.*max_value_bytes"),
    ):
        ds.append({"b": [b"x", b"y" * 1001]})
    assert len(ds) == 0


def test_decode_refuses_a_stored_image_over_the_pixel_limit(tmp_path: Path) -> None:
    ds = th.create(f"memory://{tmp_path.name}", {"img": th.Image("jpeg")})
    ds.append({"img": [encode_image("jpeg", np.zeros((64, 64, 3), np.uint8))]})
    with (
        limits.override(max_image_pixels=100),
        pytest.raises(TensorhouseError, match="max_image_pixels"),
    ):
        ds.take([0])


# -- the limits API ----------------------------------------------------------------------


def test_limits_configure_restore_and_validate() -> None:
    before = limits.current()
    previous = limits.configure(max_image_pixels=123)
    try:
        assert limits.current().max_image_pixels == 123
    finally:
        limits.restore(previous)
    assert limits.current() == before
    with pytest.raises(TypeError, match="unknown limit"):
        limits.configure(max_bogus=1)
    with pytest.raises(TypeError, match="non-negative int"):
        limits.configure(max_image_pixels=-1)


def test_limit_errors_are_both_typed_and_limit_errors() -> None:
    with pytest.raises(limits.LimitExceededError) as info:
        limits.check("max_value_bytes", 1 << 40, what="x", error=SchemaError)
    assert isinstance(info.value, SchemaError) and info.value.limit == "max_value_bytes"


# -- the viewer -----------------------------------------------------------------------------


@pytest.fixture
def viewer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tensorhouse.viewer.api import ViewerAPI

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "notes.txt").write_text("secret")
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"img": th.Image("jpeg"), "id": "int64"})
    ds.append({"img": [np.zeros((32, 32, 3), np.uint8)] * 3, "id": [1, 2, 3]})
    api = ViewerAPI(uri)
    yield api
    api.close()


def _sql(api, sql: str):  # type: ignore[no-untyped-def]
    from tensorhouse.viewer.api import Ref

    return api.rows(Ref(), sql=sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT _rowid, t.content FROM ds, read_text('.tmp/notes.txt') AS t",
        "SELECT _rowid, g.file FROM ds, glob('{cwd}/.tmp/*') AS g",
    ],
)
def test_viewer_reads_no_files(viewer, sql: str) -> None:  # type: ignore[no-untyped-def]
    from tensorhouse.viewer.api import ApiError

    with pytest.raises(ApiError, match="disabled by configuration"):
        _sql(viewer, sql.format(cwd=os.getcwd()))


def test_viewer_refuses_udf_outputs_over_the_limit(viewer) -> None:  # type: ignore[no-untyped-def]
    from tensorhouse.viewer.api import ApiError

    with pytest.raises(ApiError, match="max_udf_output_bytes"):
        _sql(
            viewer,
            "SELECT _rowid, tensor_shape(image_resize(decode_image(img), 8192, 8192)) AS s FROM ds",
        )
    with pytest.raises(ApiError, match="max_image_pixels"):
        _sql(
            viewer,
            f"SELECT _rowid, tensor_shape(decode_image(from_hex('{huge_jpeg(32000, 32000).hex()}'))) AS s FROM ds",
        )
    page = _sql(
        viewer, "SELECT _rowid, tensor_shape(image_resize(decode_image(img), 16, 16)) AS s FROM ds"
    )
    assert [r["extra"]["s"] for r in page["rows"]] == [[16, 16, 3]] * 3


def test_viewer_page_of_huge_strings_stays_small(viewer) -> None:  # type: ignore[no-untyped-def]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    page = _sql(viewer, "SELECT _rowid, repeat('x', 20000000) AS big FROM ds")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert all(len(r["extra"]["big"]) <= 301 for r in page["rows"])
    assert grown_mb < 500  # was 20 MB per row per page: 9.7 GB for 500 rows


def test_viewer_database_is_limited(viewer) -> None:  # type: ignore[no-untyped-def]
    ds = viewer.dataset(__import__("tensorhouse.viewer.api", fromlist=["Ref"]).Ref())
    key, tables = ("ds", ds.branch_name, ds.version), {"ds": ds}
    (row,) = viewer._sessions.query(
        key,
        tables,
        "SELECT current_setting('temp_directory'), "
        "current_setting('threads'), current_setting('memory_limit')",
    )
    assert row[0] == "" and row[1] == limits.current().viewer_threads
    assert "GiB" in row[2] or "MiB" in row[2]
