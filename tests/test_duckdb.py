"""DuckDB over tensorhouse datasets: registration, types, pushdown, time travel, joins, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from sql_fixtures import CLASSES, EMB_DIM, counted, make_demo, make_float16

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_demo(tmp_path_factory.mktemp("duck"))


@pytest.fixture
def con(demo: Any) -> Any:
    c = duckdb.connect()
    th.duckdb.register(c, "pets", demo.uri)
    th.duckdb.register(c, "pets_ids", demo.uri, rowid=True)
    yield c
    c.close()


def test_group_by_label_matches_numpy(con: Any, demo: Any) -> None:
    got = con.sql(
        "SELECT label, count(*) AS n, sum(id) AS s FROM pets WHERE id >= 20 GROUP BY label ORDER BY label"
    )
    rows = demo.rows()
    keep = rows["id"] >= 20
    want = [
        (
            k,
            int(((rows["label"] == k) & keep).sum()),
            int(rows["id"][(rows["label"] == k) & keep].sum()),
        )
        for k in range(len(CLASSES))
    ]
    assert [(a, b, int(c)) for a, b, c in got.fetchall()] == want


def test_star_and_rowid(con: Any, demo: Any) -> None:
    cols = th.open(demo.uri).columns
    assert con.sql("SELECT * FROM pets").columns == cols
    assert [r[0] for r in con.sql("DESCRIBE pets").fetchall()] == cols
    with pytest.raises(duckdb.BinderException, match="_rowid"):
        con.sql("SELECT _rowid FROM pets")
    # opt-in: rowid=True shows _rowid first
    assert con.sql("SELECT * FROM pets_ids").columns == ["_rowid", *cols]
    assert con.sql("SELECT * EXCLUDE (_rowid) FROM pets_ids").columns == cols
    got = con.sql("SELECT _rowid, label FROM pets_ids ORDER BY _rowid").fetchall()
    rows = demo.rows()
    assert got == list(zip(rows["_rowid"].tolist(), rows["label"].tolist(), strict=True))


def test_count_star_reads_no_chunk(demo: Any) -> None:
    ds, store = counted(th.open(demo.uri))
    c = duckdb.connect()
    th.duckdb.register(c, "pets", ds)
    assert c.sql("SELECT count(*) FROM pets").fetchall() == [(180,)]
    assert set(store.reads) <= {"_deletions"}  # DuckDB asks for column 0: _rowid, computed


def test_projection_and_filter_pushdown(demo: Any) -> None:
    ds, store = counted(th.open(demo.uri))
    c = duckdb.connect()
    c.register("pets", TensorhouseArrowDataset(ds))
    n = c.sql("SELECT count(label) FROM pets WHERE label = 1").fetchall()[0][0]
    assert n == int((demo.rows()["label"] == 1).sum())
    assert "image" not in store.reads and "embedding" not in store.reads
    store.reset()
    got = c.sql("SELECT id FROM pets WHERE id >= 185 ORDER BY id").fetchall()
    assert [r[0] for r in got] == [i for i in range(185, 200) if i % 10 != 9]
    assert len(ds.reader.index("id").refs) == 2
    assert store.reads["id"] == 1  # min/max skipped the first fragment's chunk


def test_limit_stops_reading(demo: Any) -> None:
    ds, store = counted(th.open(demo.uri))
    c = duckdb.connect()
    c.register("pets", TensorhouseArrowDataset(ds, batch_bytes=4096))
    assert len(c.sql("SELECT image FROM pets LIMIT 1").fetchall()) == 1
    total = len([r for r in ds.reader.index("image").refs if r is not None])
    assert store.reads["image"] < total


def test_tensor_types(con: Any, demo: Any) -> None:
    rel = con.sql("SELECT embedding, mask, boxes, depth, image FROM pets")
    assert [str(t) for t in rel.types] == [
        f"FLOAT[{EMB_DIM}]",
        "UTINYINT[4][4]",
        "FLOAT[4][]",
        'STRUCT("data" FLOAT[], shape INTEGER[2])',
        "BLOB",
    ]
    out = th.to_numpy(
        con.sql(
            "SELECT embedding, mask, boxes, depth, image, len(boxes) AS nb FROM pets_ids ORDER BY _rowid"
        )
    )
    rows = demo.rows()
    np.testing.assert_array_equal(out["embedding"], rows["embedding"])
    assert out["mask"].shape == (180, 4, 4) and out["mask"].dtype == np.uint8
    np.testing.assert_array_equal(out["mask"], rows["mask"])
    for got_b, want_b, got_d, want_d in zip(
        out["boxes"], rows["boxes"], out["depth"], rows["depth"], strict=True
    ):
        np.testing.assert_array_equal(got_b, want_b.reshape(-1, 4))
        np.testing.assert_array_equal(got_d, want_d)
    assert out["image"] == rows["image"]
    assert out["nb"].tolist() == [len(b) for b in rows["boxes"]]


def test_array_cosine_similarity_matches_numpy(con: Any, demo: Any) -> None:
    rows = demo.rows()
    q = rows["embedding"][3]
    got = con.sql(
        "SELECT id, array_cosine_similarity(embedding, $q::FLOAT[8]) AS sim FROM pets ORDER BY sim DESC LIMIT 5",
        params={"q": q.tolist()},
    ).fetchall()
    sims = rows["embedding"] @ q / (np.linalg.norm(rows["embedding"], axis=1) * np.linalg.norm(q))
    order = np.argsort(-sims)[:5]
    assert [r[0] for r in got] == rows["id"][order].tolist()
    np.testing.assert_allclose([r[1] for r in got], sims[order], rtol=1e-5)


def test_float16_dataset(tmp_path: Path) -> None:
    vals = make_float16(str(tmp_path / "f16"))
    c = duckdb.connect()
    th.duckdb.register(c, "f16", str(tmp_path / "f16"))
    assert c.sql("SELECT sum(k) FROM f16").fetchall() == [(45,)]
    out = th.to_numpy(c.sql("SELECT h, emb, rag FROM f16 ORDER BY k"))
    np.testing.assert_array_equal(out["h"], vals["h"].astype(np.float32))
    np.testing.assert_array_equal(out["emb"], vals["emb"].astype(np.float32))
    assert [r.shape for r in out["rag"]] == [v.shape for v in vals["rag"]]
    assert c.sql("SELECT count(*) FROM f16 WHERE h < 0.5").fetchall() == [
        (int((vals["h"] < 0.5).sum()),)
    ]


def test_time_travel(con: Any, demo: Any, tmp_path: Path) -> None:
    assert th.duckdb.scan(con, demo.uri, version=1).aggregate("count(*)").fetchall() == [(150,)]
    th.duckdb.register(con, "pets_v2", demo.uri, version=2, rowid=True)
    got = con.sql(
        "SELECT count(*) FROM pets_v2 WHERE _rowid NOT IN (SELECT _rowid FROM pets_ids)"
    ).fetchall()
    assert got == [(20,)]  # the deleted tenth ids
    uri = str(tmp_path / "tt")
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": [1, 2]})
    ds.tag("two")
    stamp = datetime.now(UTC)
    ds.append({"x": [3]})
    ds.branch("exp").append({"x": [100]})
    assert th.duckdb.scan(con, uri, tag="two").aggregate("sum(x)").fetchall() == [(3,)]
    assert th.duckdb.scan(con, uri, timestamp=stamp).aggregate("sum(x)").fetchall() == [(3,)]
    assert th.duckdb.scan(con, uri, branch="exp").aggregate("sum(x)").fetchall() == [(106,)]


def test_refresh_sees_new_commits(tmp_path: Path) -> None:
    uri = str(tmp_path / "live")
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": [1]})
    c = th.duckdb.connect(tables={"pinned": uri})
    th.duckdb.register(c, "live", uri, refresh=True)
    ds.append({"x": [2]})
    assert c.sql("SELECT (SELECT sum(x) FROM pinned), (SELECT sum(x) FROM live)").fetchall() == [
        (1, 3)
    ]
    ds.add_column("y", "int32")
    with pytest.raises(duckdb.Error, match="register the table again"):
        c.sql("SELECT * FROM live").fetchall()
    assert c.sql("SELECT sum(x) FROM pinned").fetchall() == [(1,)]  # the connection still works


def test_join_parquet_and_delta(con: Any, demo: Any) -> None:
    con.register("owners", DeltaTable(demo.owners_path).to_pyarrow_dataset())
    got = con.sql(f"""
        SELECT m.split, o.owner, count(*) AS n
        FROM pets p JOIN read_parquet('{demo.meta_path}') m ON p.id = m.id JOIN owners o ON p.label = o.label
        GROUP BY ALL ORDER BY ALL""").df()
    want = (
        demo.frame()
        .merge(demo.meta, on="id")
        .merge(demo.owners, on="label")
        .groupby(["split", "owner"])
        .size()
        .reset_index(name="n")
    )
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_to_torch(con: Any, demo: Any) -> None:
    import torch

    out = th.to_torch(
        con.sql("SELECT label, embedding, depth, caption FROM pets_ids ORDER BY _rowid")
    )
    assert out["embedding"].shape == (180, EMB_DIM) and out["embedding"].dtype == torch.float32
    assert out["label"].dtype == torch.int32
    assert isinstance(out["depth"][0], torch.Tensor) and out["depth"][0].shape[1] == 3
    assert out["caption"] == demo.rows()["caption"]


def test_bad_input(con: Any, demo: Any, tmp_path: Path) -> None:
    with pytest.raises(th.DatasetNotFoundError):
        th.duckdb.register(con, "x", str(tmp_path / "nothing"))
    with pytest.raises(th.VersionNotFoundError):
        th.duckdb.register(con, "x", demo.uri, version=42)
    with pytest.raises(th.VersionNotFoundError):
        th.duckdb.scan(con, demo.uri, tag="no-such-tag")
    with pytest.raises(duckdb.BinderException, match="nope"):
        con.sql("SELECT nope FROM pets")
    with pytest.raises(ValueError):
        th.duckdb.register(con, "", demo.uri)
    # a filter DuckDB does not push (a function call) still runs, in DuckDB
    assert con.sql("SELECT count(*) FROM pets WHERE caption LIKE '%dog%'").fetchall()[0][0] == sum(
        "dog" in c for c in demo.rows()["caption"]
    )
    assert con.sql("SELECT 1").fetchall() == [(1,)]


def test_registered_datasets(demo: Any) -> None:
    c = duckdb.connect()
    assert th.duckdb.registered_datasets(c) == []
    th.duckdb.register(c, "pets", demo.uri)
    th.duckdb.register(c, "pets_again", demo.uri)
    th.duckdb.register(c, "old", demo.uri, version=1)
    found = th.duckdb.registered_datasets(c)
    assert sorted(d.version for d in found) == [1, 3]
    other = duckdb.connect()
    assert th.duckdb.registered_datasets(other) == []
    th.duckdb.register(c, "old", demo.uri)  # replaced: version 1 is no longer held
    import gc

    gc.collect()
    assert [d.version for d in th.duckdb.registered_datasets(c)] == [3]
