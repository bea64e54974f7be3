"""th.write: query results (DuckDB, DataFusion, Arrow) into datasets, with tensor types kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datafusion
import duckdb
import numpy as np
import pyarrow as pa
import pytest
from sql_fixtures import CLASSES, EMB_DIM, make_demo

import tensorhouse as th
from tensorhouse.connector.write_results import resolve_schema


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_demo(tmp_path_factory.mktemp("mat"))


@pytest.fixture
def con(demo: Any) -> Any:
    c = duckdb.connect()
    th.duckdb.register(c, "pets", demo.uri)
    th.duckdb.register(c, "pets_ids", demo.uri, rowid=True)
    yield c
    c.close()


def expected_types() -> dict[str, th.ColumnType]:
    from sql_fixtures import schema

    return {k: th.types.as_type(v) for k, v in schema().items()}


def test_duckdb_result_keeps_tensor_types(con: Any, demo: Any, tmp_path: Path) -> None:
    rel = con.sql("SELECT * FROM pets WHERE label = 1 ORDER BY id")
    out = th.write(str(tmp_path / "cats"), rel)
    assert dict(out.schema.columns) == expected_types()  # by name: DuckDB drops field metadata
    rows = demo.rows()
    keep = rows["label"] == 1
    assert len(out) == int(keep.sum()) and out.version == 1
    back = out.take(np.arange(len(out)), decode=False)
    np.testing.assert_array_equal(back["id"], rows["id"][keep])
    np.testing.assert_array_equal(back["embedding"], rows["embedding"][keep])
    np.testing.assert_array_equal(back["mask"], rows["mask"][keep])
    assert back["image"] == [b for b, k in zip(rows["image"], keep, strict=True) if k]
    for got, want in zip(
        back["depth"], [d for d, k in zip(rows["depth"], keep, strict=True) if k], strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_datafusion_result_keeps_types_from_metadata(demo: Any, tmp_path: Path) -> None:
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, "pets", demo.uri)
    out = th.write(
        str(tmp_path / "df"),
        ctx.sql("SELECT id, label, image, embedding, boxes FROM pets WHERE id < 50"),
    )
    want = expected_types()
    assert dict(out.schema.columns) == {
        k: want[k] for k in ("id", "label", "image", "embedding", "boxes")
    }
    assert len(out) == 45


def test_computed_columns_are_inferred(con: Any, tmp_path: Path) -> None:
    rel = con.sql(
        "SELECT label, count(*) AS n, sum(id) AS total, avg(score) AS mean, "
        "list(id ORDER BY id)[1:2] AS first_ids FROM pets GROUP BY label ORDER BY label"
    )
    exact = th.write(
        str(tmp_path / "agg-decimal"), rel
    )  # sum() gives a DECIMAL(38,0), stored exactly
    assert exact.schema["total"] == th.Arrow("decimal(38,0)")
    out = th.write(str(tmp_path / "agg"), rel, schema={"total": "int64"})
    s = out.schema
    assert s["label"] == th.ClassLabel(CLASSES) and s["n"] == th.Scalar("int64")
    assert s["total"] == th.Scalar("int64") and s["mean"] == th.Scalar("float64")
    assert s["first_ids"] == th.Tensor("int64", (None,))
    assert len(out) == len(CLASSES)


def test_arrow_inputs_and_modes(tmp_path: Path) -> None:
    uri = str(tmp_path / "modes")
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype=np.float32)), 4)
    table = pa.table({"x": pa.array([1, 2], pa.int64()), "emb": emb})
    ds = th.write(uri, table)
    assert ds.schema["emb"] == th.Embedding(4) and ds.version == 1  # a float vector: an embedding
    with pytest.raises(th.DatasetExistsError):
        th.write(uri, table)
    ds = th.write(uri, table.to_reader(), mode="append")
    ds = th.write(uri, table.to_batches(), mode="append")
    assert len(ds) == 6 and ds.version == 3
    ds = th.write(uri, pa.table({"emb": emb, "x": pa.array([7, 8], pa.int32())}), mode="overwrite")
    assert ds.version == 4 and len(ds) == 2  # one commit: old rows gone, new rows in
    assert ds.take([0, 1], columns=["x"])["x"].tolist() == [7, 8]
    assert len(th.open(uri, version=3)) == 6
    ds = th.write(str(tmp_path / "new-by-overwrite"), table, mode="overwrite")
    assert len(ds) == 2


def test_one_commit_for_many_groups(con: Any, tmp_path: Path) -> None:
    out = th.write(
        str(tmp_path / "groups"), con.sql("SELECT id, embedding FROM pets"), group_bytes=1024
    )
    assert out.version == 1 and len(out) == 180
    assert len(out.snapshot.fragments) > 1  # several groups, each its own fragment, one version


def test_rowid_is_dropped_and_empty_results(con: Any, tmp_path: Path) -> None:
    out = th.write(str(tmp_path / "ids"), con.sql("SELECT _rowid, id FROM pets_ids WHERE id < 3"))
    assert out.columns == ["id"]
    empty = th.write(
        str(tmp_path / "empty"), con.sql("SELECT id, embedding FROM pets WHERE id < 0")
    )
    assert (
        empty.version == 0
        and len(empty) == 0
        and empty.schema["embedding"] == th.Embedding(EMB_DIM)
    )
    again = th.write(
        str(tmp_path / "ids"), con.sql("SELECT id FROM pets WHERE id < 0"), mode="append"
    )
    assert again.version == 1  # nothing appended, no new version


def test_append_checks_columns(con: Any, tmp_path: Path) -> None:
    uri = str(tmp_path / "strict")
    th.write(uri, con.sql("SELECT id, label FROM pets WHERE id < 5"))
    with pytest.raises(th.SchemaError, match="missing \\['label'\\]"):
        th.write(uri, con.sql("SELECT id FROM pets"), mode="append")
    with pytest.raises(th.SchemaError, match="score"):
        th.write(uri, con.sql("SELECT id, label, score FROM pets"), mode="append")
    with pytest.raises(th.SchemaError, match="types other than"):
        th.write(uri, con.sql("SELECT id, label FROM pets"), mode="append", schema={"id": "int32"})
    with pytest.raises(th.DatasetNotFoundError):
        th.write(str(tmp_path / "absent"), con.sql("SELECT id FROM pets"), mode="append")
    with pytest.raises(ValueError, match="mode"):
        th.write(uri, con.sql("SELECT id FROM pets"), mode="upsert")  # type: ignore[arg-type]
    # the connection is usable after a failed write
    assert con.sql("SELECT count(*) FROM pets").fetchall() == [(180,)]


def test_resolve_schema_rules() -> None:
    image_field = th.Image("png").arrow_field("pic")
    s = resolve_schema(
        pa.schema([image_field, pa.field("n", pa.int32()), pa.field("t", pa.string())]),
        {"n": th.ClassLabel(["a", "b"])},
    )
    assert (
        s["pic"] == th.Image("png") and s["n"] == th.ClassLabel(["a", "b"]) and s["t"] == th.Text()
    )
    # metadata that does not fit the Arrow type is ignored
    wrong = pa.field("pic", pa.int64(), metadata=image_field.metadata)
    assert resolve_schema(pa.schema([wrong]))["pic"] == th.Scalar("int64")
    with pytest.raises(th.SchemaError, match="does not have"):
        resolve_schema(pa.schema([pa.field("a", pa.int64())]), {"b": "int64"})


def test_type_hints_come_from_the_results_connection(demo: Any, tmp_path: Path) -> None:
    other = duckdb.connect()  # nothing registered: the same bytes stay plain Binary
    table = th.connector.arrow_dataset(demo.uri).to_table(columns=["id", "image"])
    other.register("plain", table)
    out = th.write(str(tmp_path / "plain"), other.sql("SELECT id, image FROM plain"))
    assert out.schema["image"] == th.Binary()
    th.duckdb.register(other, "pets", demo.uri)
    out = th.write(str(tmp_path / "typed"), other.sql("SELECT id, image FROM pets"))
    assert out.schema["image"] == th.Image("jpeg")


def test_empty_dataset_through_both_engines(tmp_path: Path) -> None:
    uri = str(tmp_path / "empty")
    th.create(uri, {"x": "int64", "emb": th.Embedding(3)})
    c = duckdb.connect()
    th.duckdb.register(c, "e", uri)
    assert c.sql("SELECT count(*), sum(x) FROM e").fetchall() == [(0, None)]
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, "e", uri)
    assert ctx.sql("SELECT count(*) AS n FROM e").to_pydict() == {"n": [0]}
    assert th.to_numpy(c.sql("SELECT emb FROM e"))["emb"].shape == (0, 3)
