"""DataFusion over tensorhouse datasets: registration, the table function, pushdown, types, joins, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datafusion
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from sql_fixtures import CLASSES, counted, make_demo, make_float16

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset
from tensorhouse.types import ARROW_METADATA_KEY


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_demo(tmp_path_factory.mktemp("df"))


@pytest.fixture
def ctx(demo: Any) -> datafusion.SessionContext:
    c = datafusion.SessionContext()
    th.datafusion.register(c, "pets", demo.uri)
    th.datafusion.register(c, "pets_ids", demo.uri, rowid=True)
    th.datafusion.install(c)
    th.datafusion.install(c, name="tensorhouse_ids", rowid=True)
    return c


def test_group_by_label_matches_numpy(ctx: datafusion.SessionContext, demo: Any) -> None:
    got = ctx.sql(
        "SELECT label, count(*) AS n FROM pets WHERE id >= 20 GROUP BY label ORDER BY label"
    ).to_pydict()
    rows = demo.rows()
    keep = rows["id"] >= 20
    assert got == {
        "label": list(range(len(CLASSES))),
        "n": [int(((rows["label"] == k) & keep).sum()) for k in range(len(CLASSES))],
    }


def test_star_and_rowid(ctx: datafusion.SessionContext, demo: Any) -> None:
    cols = th.open(demo.uri).columns
    assert ctx.sql("SELECT * FROM pets").schema().names == cols
    with pytest.raises(Exception, match="_rowid"):
        ctx.sql("SELECT _rowid FROM pets").collect()
    assert ctx.sql(f"SELECT * FROM tensorhouse('{demo.uri}')").schema().names == cols
    # opt-in: rowid=True shows _rowid first
    assert ctx.sql("SELECT * FROM pets_ids").schema().names == ["_rowid", *cols]
    assert ctx.sql("SELECT * EXCLUDE (_rowid) FROM pets_ids").schema().names == cols
    got = ctx.sql("SELECT _rowid, label FROM pets_ids ORDER BY _rowid").to_pydict()
    assert got["_rowid"] == demo.rows()["_rowid"].tolist()


def test_fragments_are_partitions_and_pruned(demo: Any) -> None:
    ds, store = counted(th.open(demo.uri))
    c = datafusion.SessionContext()
    c.register_dataset("pets", TensorhouseArrowDataset(ds, fragment_rows=64))
    assert c.sql("SELECT count(*) AS n FROM pets").to_pydict() == {"n": [180]}
    assert set(store.reads) <= {"_deletions"}  # count(*) asks for no column
    df = c.sql("SELECT id FROM pets WHERE id >= 185")
    assert df.execution_plan().partition_count == 1  # of 4 fragments (3 + 1), statistics kept one
    assert sorted(df.to_pydict()["id"]) == [i for i in range(185, 200) if i % 10 != 9]
    assert store.reads["id"] == 1
    assert c.sql("SELECT id FROM pets").execution_plan().partition_count == 4
    store.reset()
    c.sql("SELECT label FROM pets WHERE label = 2").collect()
    assert "image" not in store.reads and "embedding" not in store.reads


def test_metadata_survives(ctx: datafusion.SessionContext) -> None:
    schema = ctx.sql("SELECT image, embedding, label FROM pets WHERE id < 5").schema()
    assert ARROW_METADATA_KEY in schema.field("image").metadata
    assert th.types.ColumnType.from_arrow_field(schema.field("label")) == th.ClassLabel(CLASSES)


def test_tensor_types_and_cosine_distance(ctx: datafusion.SessionContext, demo: Any) -> None:
    out = th.to_numpy(
        ctx.sql(
            "SELECT embedding, mask, boxes, depth, image, array_length(boxes) AS nb "
            "FROM pets_ids ORDER BY _rowid"
        )
    )
    rows = demo.rows()
    np.testing.assert_array_equal(out["embedding"], rows["embedding"])
    np.testing.assert_array_equal(out["mask"], rows["mask"])
    assert [len(b) for b in out["boxes"]] == [len(b) for b in rows["boxes"]]
    assert [d.shape for d in out["depth"]] == [d.shape for d in rows["depth"]]
    assert out["image"] == rows["image"]
    q = rows["embedding"][3]
    got = ctx.sql(
        f"SELECT id, cosine_distance(embedding, make_array({', '.join(map(str, q.tolist()))})) AS d "
        "FROM pets ORDER BY d LIMIT 5"
    ).to_pydict()
    sims = rows["embedding"] @ q / (np.linalg.norm(rows["embedding"], axis=1) * np.linalg.norm(q))
    order = np.argsort(-sims)[:5]
    assert got["id"] == rows["id"][order].tolist()
    np.testing.assert_allclose(got["d"], 1 - sims[order], atol=1e-5)


def test_float16_dataset(tmp_path: Path) -> None:
    vals = make_float16(str(tmp_path / "f16"))
    c = datafusion.SessionContext()
    th.datafusion.register(c, "f16", str(tmp_path / "f16"))
    out = th.to_numpy(c.sql("SELECT h, emb, rag FROM f16 ORDER BY k"))
    np.testing.assert_array_equal(out["emb"], vals["emb"].astype(np.float32))
    assert [r.shape for r in out["rag"]] == [v.shape for v in vals["rag"]]


def test_table_function_time_travel(
    ctx: datafusion.SessionContext, demo: Any, tmp_path: Path
) -> None:
    count = "SELECT count(*) AS n FROM tensorhouse('{uri}'{rest})"
    assert ctx.sql(count.format(uri=demo.uri, rest=", 1")).to_pydict() == {"n": [150]}
    assert ctx.sql(count.format(uri=demo.uri, rest=", NULL")).to_pydict() == {"n": [180]}
    assert ctx.sql(count.format(uri=demo.uri, rest="")).to_pydict() == {"n": [180]}
    got = ctx.sql(
        f"SELECT count(*) AS n FROM tensorhouse_ids('{demo.uri}', 2) "
        "WHERE _rowid NOT IN (SELECT _rowid FROM pets_ids)"
    ).to_pydict()
    assert got == {"n": [20]}
    uri = str(tmp_path / "tt")
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": [1, 2]})
    ds.tag("two")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    ds.append({"x": [3]})
    ds.branch("exp").append({"x": [100]})
    total = "SELECT sum(x) AS s FROM tensorhouse('{uri}'{rest})"
    assert ctx.sql(total.format(uri=uri, rest=", 'two'")).to_pydict() == {"s": [3]}
    assert ctx.sql(total.format(uri=uri, rest=f", TIMESTAMP '{stamp}'")).to_pydict() == {"s": [3]}
    assert ctx.sql(total.format(uri=uri, rest=", NULL, 'exp'")).to_pydict() == {"s": [106]}
    with pytest.raises(Exception, match="Unsupported function argument"):
        ctx.sql(total.format(uri=uri, rest=", version => 1")).collect()


def test_register_versions(demo: Any) -> None:
    c = datafusion.SessionContext()
    th.datafusion.register(c, "pets", demo.uri, version=1)
    assert c.sql("SELECT count(*) AS n FROM pets").to_pydict() == {"n": [150]}
    th.datafusion.register(c, "pets", demo.uri)  # replaces the name
    assert c.sql("SELECT count(*) AS n FROM pets").to_pydict() == {"n": [180]}


def test_install_calls_the_udf_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorhouse.udfs

    seen: list[Any] = []
    monkeypatch.setattr(tensorhouse.udfs, "register", seen.append, raising=False)
    c = datafusion.SessionContext()
    th.datafusion.install(c)
    assert seen == [c]


def test_join_parquet_and_delta(ctx: datafusion.SessionContext, demo: Any) -> None:
    ctx.register_parquet("meta", demo.meta_path)
    ctx.register_dataset("owners", DeltaTable(demo.owners_path).to_pyarrow_dataset())
    got = ctx.sql("""
        SELECT m.split, o.owner, count(*) AS n
        FROM pets p JOIN meta m ON p.id = m.id JOIN owners o ON p.label = o.label
        GROUP BY m.split, o.owner ORDER BY m.split, o.owner""").to_pandas()
    want = (
        demo.frame()
        .merge(demo.meta, on="id")
        .merge(demo.owners, on="label")
        .groupby(["split", "owner"])
        .size()
        .reset_index(name="n")
    )
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_bad_input(ctx: datafusion.SessionContext, demo: Any, tmp_path: Path) -> None:
    with pytest.raises(th.DatasetNotFoundError):
        th.datafusion.register(ctx, "x", str(tmp_path / "nothing"))
    with pytest.raises(th.VersionNotFoundError):
        th.datafusion.register(ctx, "x", demo.uri, version=42)
    with pytest.raises(Exception, match="DatasetNotFoundError"):
        ctx.sql(f"SELECT * FROM tensorhouse('{tmp_path / 'nothing'}')").collect()
    with pytest.raises(Exception, match="VersionNotFoundError"):
        ctx.sql(f"SELECT * FROM tensorhouse('{demo.uri}', 42)").collect()
    with pytest.raises(Exception, match="first argument is the dataset URI"):
        ctx.sql("SELECT * FROM tensorhouse(42)").collect()
    with pytest.raises(Exception, match="nope"):
        ctx.sql("SELECT nope FROM pets").collect()
    assert ctx.sql("SELECT 1 AS one").to_pydict() == {"one": [1]}
    assert isinstance(ctx.sql("SELECT label FROM pets LIMIT 1").to_arrow_table(), pa.Table)


def test_rowid_metadata_names_the_dataset(ctx: datafusion.SessionContext, demo: Any) -> None:
    import json

    from tensorhouse.connector.arrow_dataset import ROWID_DATASET_KEY

    field = ctx.sql("SELECT _rowid, label FROM pets_ids WHERE id < 3").schema().field("_rowid")
    info = json.loads(field.metadata[ROWID_DATASET_KEY])
    assert info == {"uri": demo.uri, "version": 3, "branch": "main"}
    live = th.datafusion.register(ctx, "live", demo.uri, refresh=True, rowid=True)
    assert json.loads(live.schema.field("_rowid").metadata[ROWID_DATASET_KEY])["version"] is None
