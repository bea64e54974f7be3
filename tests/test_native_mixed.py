"""Datasets with tensor columns: DuckDB reads the tabular columns natively, the tensors by row id.

Real DuckDB over the datasets' own Parquet group files; every result is
compared with the Python scan (``native=False``) of the same dataset.
"""

from __future__ import annotations

from typing import Any

import datafusion
import duckdb
import numpy as np
import pytest

import tensorhouse as th
from tensorhouse.connector import native
from tensorhouse.errors import RowNotFoundError
from tensorhouse.format import rowid_reads
from tensorhouse.format.rowid_reads import RowIdReader


@pytest.fixture(autouse=True)
def _native_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native.ENV, raising=False)
    monkeypatch.delenv(native.MIXED_ENV, raising=False)  # on by default (see native.MIXED_ENV)


SCHEMA = {
    "id": "int64",
    "label": "int32",
    "tag": th.Text(),
    "emb": th.Embedding(8),
    "mask": th.Tensor("uint8", (None, 2)),
}


def part(start: int, n: int) -> dict[str, Any]:
    rng = np.random.default_rng(start)
    ids = np.arange(start, start + n)
    return {
        "id": ids,
        "label": (ids % 10).astype("int32"),
        "tag": [f"t{i % 37}" for i in ids],
        "emb": rng.random((n, 8), dtype=np.float32),
        "mask": [np.full((int(i % 3), 2), i % 200, np.uint8) for i in ids],
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> th.Dataset:
    """Three fragments in small chunks (so vectors span chunks), some rows deleted."""
    root = tmp_path_factory.mktemp("mixed")
    ds = th.create(str(root / "m"), SCHEMA, chunk_bytes=4096)
    for start, n in ((0, 3000), (3000, 2500), (5500, 1700)):
        ds.append(part(start, n))
    ds.delete("id % 97 = 3")
    return th.open(str(root / "m"))


def sessions(ds: th.Dataset) -> tuple[Any, Any]:
    a, b = duckdb.connect(), duckdb.connect()
    th.duckdb.register(a, "t", ds)
    th.duckdb.register(b, "t", ds, native=False)
    return a, b


QUERIES = [
    "SELECT * FROM t ORDER BY id",
    "SELECT id, emb FROM t WHERE tag = 't5' ORDER BY id",
    "SELECT id, mask FROM t WHERE label = 3 AND id > 2000 ORDER BY id",
    "SELECT emb, id FROM t WHERE id IN (0, 2999, 3000, 5499, 5500, 7199) ORDER BY id",
    "SELECT id, array_cosine_similarity(emb, [1,0,0,0,0,0,0,0]::FLOAT[8]) AS s "
    "FROM t ORDER BY s DESC, id LIMIT 10",
    "SELECT label, count(*), sum(list_sum(emb::FLOAT[])) FROM t GROUP BY label ORDER BY label",
    "SELECT count(*) FROM t WHERE tag LIKE 't1%'",
    "SELECT t.id, u.emb FROM t JOIN t AS u ON t.id = u.id + 1 WHERE t.label = 0 ORDER BY t.id",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_results_match_the_python_scan(mixed: th.Dataset, sql: str) -> None:
    a, b = sessions(mixed)
    path = th.duckdb.read_path(a, "t")
    assert path is not None and path.native and path.by_rowid == ("emb", "mask")
    got, want = a.sql(sql).fetchall(), b.sql(sql).fetchall()
    if "sum(" in sql:
        assert [r[:2] for r in got] == [r[:2] for r in want]
        assert np.allclose([r[2] for r in got], [r[2] for r in want], rtol=1e-5)
    else:
        assert got == want
    assert a.sql("DESCRIBE t").fetchall() == b.sql("DESCRIBE t").fetchall()


def test_queries_not_naming_a_tensor_do_not_read_it(
    mixed: th.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = RowIdReader.read

    def counting(self: RowIdReader, ids: np.ndarray) -> Any:
        calls.append(len(ids))
        return real(self, ids)

    monkeypatch.setattr(rowid_reads.RowIdReader, "read", counting)
    a, b = sessions(mixed)
    for sql in (
        "SELECT count(*) FROM t WHERE id < 100 AND label = 7",
        "SELECT tag, count(*) FROM t GROUP BY tag ORDER BY tag",
        "SELECT id, label FROM t WHERE tag IN ('t1', 't2') ORDER BY id",
    ):
        assert a.sql(sql).fetchall() == b.sql(sql).fetchall()
    assert calls == []
    plan = a.sql("EXPLAIN SELECT count(*) FROM t WHERE tag = 't3'").fetchall()[0][1]
    assert "READ_PARQUET" in plan and "PYTHON" not in plan
    a.sql("SELECT emb FROM t WHERE id = 7").fetchall()
    assert calls == [1]


def test_opt_out_and_datafusion_keep_the_python_scan(
    mixed: th.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = duckdb.connect()
    th.duckdb.register(con, "t", mixed)  # the default: native, tensors by row id
    path = th.duckdb.read_path(con, "t")
    assert path is not None and path.native and path.by_rowid
    for off in ("0", "off"):
        monkeypatch.setenv(native.MIXED_ENV, off)
        con = duckdb.connect()
        th.duckdb.register(con, "t", mixed)
        path = th.duckdb.read_path(con, "t")
        assert path is not None and not path.native and "tensor" in path.reason
    monkeypatch.delenv(native.MIXED_ENV)
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, "t", mixed)
    dpath = th.datafusion.read_path(ctx, "t")
    assert dpath is not None and not dpath.native


def test_re_registering_drops_the_row_id_functions(mixed: th.Dataset) -> None:
    con = duckdb.connect()

    def ours() -> list[str]:
        return [
            r[0]
            for r in con.sql(
                "SELECT DISTINCT function_name FROM duckdb_functions() "
                "WHERE function_name LIKE '__tensorhouse%'"
            ).fetchall()
        ]

    th.duckdb.register(con, "t", mixed)
    first = ours()
    assert len(first) == 2
    th.duckdb.register(con, "t", mixed)
    assert len(ours()) == 2 and set(ours()) != set(first)
    py = duckdb.connect()
    th.duckdb.register(py, "t", mixed, native=False)
    sql = "SELECT count(*), sum(len(mask.data)) FROM t"
    assert con.sql(sql).fetchall() == py.sql(sql).fetchall()


def test_the_loader_reads_a_mixed_native_table(mixed: th.Dataset) -> None:
    con = duckdb.connect()
    th.duckdb.register(con, "t", mixed)
    batches = list(
        th.loader(con.sql("SELECT id, emb FROM t WHERE label = 4 ORDER BY id"), format="numpy")
    )
    ids = np.concatenate([b["id"] for b in batches])
    emb = np.concatenate([b["emb"] for b in batches])
    want = mixed.to_table(["id", "label", "emb"]).to_pandas()
    want = want[want.label == 4].sort_values("id")
    assert ids.tolist() == want.id.tolist()
    assert np.array_equal(emb, np.stack(want.emb.to_list()))


# -- the format's reader by row id -------------------------------------------------------------
def test_row_id_reader_order_repeats_chunks_and_errors(mixed: th.Dataset) -> None:
    files = mixed.native_files(["id"])
    assert files is not None
    live = mixed.to_table(["emb", "mask"], with_rowid=True)
    by_id = {r: i for i, r in enumerate(live.column("_rowid").to_pylist())}
    ids = np.array(
        [files[1].first_rowid + 5, files[0].first_rowid, files[2].first_rowid + 1699]
        + [files[0].first_rowid + i for i in range(1000, 1400)]
        + [files[0].first_rowid],
        dtype=np.int64,
    )
    ids = np.array([i for i in ids if i in by_id], dtype=np.int64)
    for name in ("emb", "mask"):
        reader = RowIdReader(mixed, name, cache_bytes=1)  # keeps one chunk: evicts all the time
        got = reader.read(ids)
        assert got.to_pylist() == live.column(name).take([by_id[int(i)] for i in ids]).to_pylist()
        run = ids[3:-1]  # consecutive ids: slices, across chunk boundaries
        assert reader.read(run).to_pylist() == got.slice(3, len(run)).to_pylist()
        assert len(reader.read(np.zeros(0, np.int64))) == 0
    dead = files[0].first_rowid + 3  # id 3 was deleted
    with pytest.raises(RowNotFoundError, match="row id"):
        RowIdReader(mixed, "emb").read(np.array([dead]))
