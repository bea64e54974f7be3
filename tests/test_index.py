"""Vector indexes: recall against exact search, prefilter, appends, deletes, updates, time travel,
vacuum, compaction and optimize, storage backends, bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest

import tensorhouse as th
from tensorhouse.index import VectorSearchError
from tensorhouse.index.errors import IndexNotFoundError

DIM = 32


def clustered(n: int, *, seed: int = 0, clusters: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, DIM)).astype(np.float32) * 2
    return (centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, DIM))).astype(
        np.float32
    )


def make(uri: str, n: int = 4000, **kw: Any) -> tuple[th.Dataset, np.ndarray]:
    x = clustered(n)
    ds = th.create(
        uri, {"id": "int64", "label": "int64", "emb": th.Embedding(DIM), "name": th.Text()}, **kw
    )
    ds.append(
        {
            "id": np.arange(n),
            "label": np.arange(n) % 10,
            "emb": x,
            "name": [f"r{i}" for i in range(n)],
        }
    )
    return ds, x


def exact_ids(
    x: np.ndarray, q: np.ndarray, k: int, metric: str, keep: np.ndarray | None = None
) -> list[int]:
    if metric == "cosine":
        s = -(x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    elif metric == "dot":
        s = -(x @ q)
    else:
        s = np.linalg.norm(x - q, axis=1)
    if keep is not None:
        s = np.where(keep, s, np.inf)
    return [int(i) for i in np.argsort(s, kind="stable")[:k] if np.isfinite(s[i])]


def recall(got: list[list[int]], want: list[list[int]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


@pytest.fixture
def ds_x(tmp_path: Any) -> tuple[th.Dataset, np.ndarray]:
    return make(str(tmp_path / "ds"))


@pytest.mark.parametrize(
    ("kind", "metric"),
    [
        ("ivf_flat", "cosine"),
        ("ivf_flat", "l2"),
        ("ivf_flat", "dot"),
        ("hnsw", "cosine"),
        ("hnsw", "l2"),
    ],
)
def test_recall_against_exact_search(
    ds_x: tuple[th.Dataset, np.ndarray], kind: str, metric: str
) -> None:
    ds, x = ds_x
    v = ds.create_index("emb", metric=metric, kind=kind, progress=False)
    assert v == 2 and ds.version == 2
    queries = clustered(30, seed=7)
    got = [ds.nearest("emb", q, k=10, columns=["id"]).column("id").to_pylist() for q in queries]
    want = [exact_ids(x, q, 10, metric) for q in queries]
    assert recall(got, want) >= 0.9
    # scores are the exact metric values of the returned rows, best first
    t = ds.nearest("emb", queries[0], k=10, columns=["id", "emb"])
    s = np.array(t.column("score").to_pylist())
    vecs = np.array(t.column("emb").to_pylist(), np.float32)
    q = queries[0]
    ref = {
        "cosine": vecs @ q / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q)),
        "dot": vecs @ q,
        "l2": np.linalg.norm(vecs - q, axis=1),
    }[metric]
    np.testing.assert_allclose(s, ref, rtol=1e-3, atol=1e-3)
    assert list(s) == sorted(s, reverse=metric != "l2")


def test_exact_true_and_no_index_are_brute_force(ds_x: tuple[th.Dataset, np.ndarray]) -> None:
    ds, x = ds_x
    q = clustered(1, seed=3)[0]
    want = exact_ids(x, q, 10, "cosine")
    assert ds.nearest("emb", q, k=10).column("id").to_pylist() == want  # no index yet
    ds.create_index("emb", progress=False, nprobe=1, nlist=64)  # a deliberately weak index
    assert ds.nearest("emb", q, k=10, exact=True).column("id").to_pylist() == want
    assert ds.nearest("emb", q, k=10, metric="l2", exact=True).column(
        "id"
    ).to_pylist() == exact_ids(x, q, 10, "l2")


def test_result_has_the_columns_and_a_score(ds_x: tuple[th.Dataset, np.ndarray]) -> None:
    ds, x = ds_x
    ds.create_index("emb", progress=False)
    t = ds.nearest("emb", x[5], k=3)
    assert t.column_names == ["id", "label", "emb", "name", "score"]
    assert t.column("id")[0].as_py() == 5 and t.column("name")[0].as_py() == "r5"
    assert t.schema.field("emb").type == ds.schema["emb"].arrow_type()
    r = ds.nearest("emb", x[5], k=3, columns=["name", "emb"], with_rowid=True)
    assert r.column_names == ["_rowid", "name", "emb", "score"]
    # feeds the loader: _rowid names its dataset, the tensors are read by row id
    batches = list(th.loader(r, batch_size=3, format="numpy", reuse_buffers=False))
    np.testing.assert_allclose(batches[0]["emb"][0], x[5])
    assert list(batches[0]["name"]) == r.column("name").to_pylist()


@pytest.mark.parametrize("kind", ["ivf_flat", "hnsw"])
def test_prefilter_returns_k_rows_inside_the_filter(
    ds_x: tuple[th.Dataset, np.ndarray], kind: str
) -> None:
    ds, x = ds_x
    ds.create_index("emb", kind=kind, progress=False)
    labels = np.arange(len(x)) % 10
    queries = clustered(20, seed=11)
    got, want = [], []
    for q in queries:
        t = ds.nearest("emb", q, k=10, where="label = 3", columns=["id", "label"])
        assert t.num_rows == 10 and set(t.column("label").to_pylist()) == {3}
        got.append(t.column("id").to_pylist())
        want.append(exact_ids(x, q, 10, "cosine", labels == 3))
    assert recall(got, want) >= 0.85
    # very selective: 7 rows match, all of them come back, nothing else
    t = ds.nearest("emb", queries[0], k=10, where="id < 70 AND label = 0", columns=["id"])
    assert sorted(t.column("id").to_pylist()) == list(range(0, 70, 10))
    assert ds.nearest("emb", queries[0], k=10, where="id < 0").num_rows == 0


def test_appended_rows_are_found_and_optimize_extends(ds_x: tuple[th.Dataset, np.ndarray]) -> None:
    ds, x = ds_x
    ds.create_index("emb", progress=False)
    q = clustered(1, seed=99)[0]
    ds.append({"id": [10_000], "label": [3], "emb": [q * 3], "name": ["new"]})
    assert ds.nearest("emb", q, k=1).column("id").to_pylist() == [10_000]
    assert ds.nearest("emb", q, k=1, where="label = 3").column("id").to_pylist() == [10_000]
    before = ds.indexes[0]
    assert before.num_vectors == len(x)
    versions = ds.optimize_indexes()
    assert versions == [ds.version]
    after = ds.indexes[0]
    assert after.num_vectors == len(x) + 1 and len(after.fragment_ids) == 2
    assert ds.nearest("emb", q, k=1).column("id").to_pylist() == [10_000]
    assert ds.optimize_indexes() == []  # up to date


def test_deleted_rows_are_never_returned(ds_x: tuple[th.Dataset, np.ndarray]) -> None:
    ds, x = ds_x
    ds.create_index("emb", progress=False)
    q = x[123]
    top = ds.nearest("emb", q, k=10, columns=["id"]).column("id").to_pylist()
    ds.delete(f"id IN ({', '.join(map(str, top[:5]))})")
    t = ds.nearest("emb", q, k=10, columns=["id"])
    assert t.num_rows == 10 and not set(t.column("id").to_pylist()) & set(top[:5])
    assert set(top[5:]) <= set(t.column("id").to_pylist())
    # filtered and deleted together
    t = ds.nearest("emb", q, k=10, where="label = 3", columns=["id", "label"])
    assert (
        t.num_rows == 10
        and set(t.column("label").to_pylist()) == {3}
        and not set(t.column("id").to_pylist()) & set(top[:5])
    )


def test_updated_vectors_are_searched_as_they_are_now(ds_x: tuple[th.Dataset, np.ndarray]) -> None:
    ds, _ = ds_x
    ds.create_index("emb", metric="l2", progress=False)
    q = clustered(1, seed=5)[0]
    ds.update({"emb": q}, where="id = 77")
    t = ds.nearest("emb", q, k=1, columns=["id"])
    assert t.column("id").to_pylist() == [77] and t.column("score")[0].as_py() == pytest.approx(
        0, abs=1e-4
    )


def test_time_travel_finds_the_index_valid_then(ds_x: tuple[th.Dataset, np.ndarray]) -> None:
    ds, x = ds_x
    v_index = ds.create_index("emb", progress=False)
    v_drop = ds.drop_index("emb_idx")
    assert ds.indexes == [] and v_drop == v_index + 1
    old = th.open(ds.uri, version=v_index)
    assert [i.name for i in old.indexes] == ["emb_idx"]
    assert th.open(ds.uri, version=v_index - 1).indexes == []
    q = x[9]
    assert old.nearest("emb", q, k=1).column("id").to_pylist() == [9]
    ds.restore(v_index)
    assert [i.name for i in ds.indexes] == ["emb_idx"]
    assert [e.operation for e in ds.history()][-3:] == [
        ds.history()[v_index].operation,
        "drop_index",
        ds.history()[-1].operation,
    ]


def test_vacuum_keeps_the_index_files_retained_versions_need(
    ds_x: tuple[th.Dataset, np.ndarray],
) -> None:
    ds, x = ds_x
    v = ds.create_index("emb", progress=False)
    path = ds.snapshot.indexes["emb_idx"].files[0].path
    ds.tag("indexed", v)
    ds.drop_index("emb_idx")
    ds.vacuum(timedelta(0), force=True)
    assert ds.store.exists(path)
    assert th.open(ds.uri, tag="indexed").nearest("emb", x[1], k=1).column("id").to_pylist() == [1]
    ds.delete_tag("indexed")
    report = ds.vacuum(timedelta(0), force=True)
    assert path in report.deleted and not ds.store.exists(path)


def test_compaction_keeps_results_right_and_optimize_rebuilds(tmp_path: Any) -> None:
    x = clustered(3000)
    ds = th.create(str(tmp_path / "c"), {"id": "int64", "emb": th.Embedding(DIM)})
    for s in range(0, 3000, 1000):
        ds.append({"id": np.arange(s, s + 1000), "emb": x[s : s + 1000]})
    ds.create_index("emb", metric="l2", progress=False)
    ds.delete("id < 10")
    ds.compact()
    assert len(ds.snapshot.fragments) == 1
    q = x[500]
    assert ds.nearest("emb", q, k=5).column("id").to_pylist() == exact_ids(x, q, 5, "l2")
    assert ds.nearest("emb", x[3], k=1).column("id").to_pylist() != [3]
    (v,) = ds.optimize_indexes()
    info = ds.indexes[0]
    assert (
        info.fragment_ids == tuple(f.id for f in ds.snapshot.fragments) and info.num_vectors == 2990
    )
    assert ds.nearest("emb", q, k=1).column("id").to_pylist() == [500] and v == ds.version


def test_memory_store_and_replace(tmp_path: Any) -> None:
    ds, x = make("memory://test-index-mem", n=1000)
    ds.create_index("emb", kind="hnsw", progress=False)
    with pytest.raises(VectorSearchError, match="name='emb_idx'"):
        ds.create_index("emb", progress=False)
    ds.create_index("emb", kind="ivf_flat", replace=True, progress=False)
    assert [(i.name, i.kind) for i in ds.indexes] == [("emb_idx", "ivf_flat")]
    assert th.open("memory://test-index-mem").nearest("emb", x[4], k=1).column(
        "id"
    ).to_pylist() == [4]


@pytest.mark.s3
def test_index_on_s3(s3_uri: tuple[str, dict[str, Any]]) -> None:
    uri, opts = s3_uri
    x = clustered(800)
    ds = th.create(uri, {"id": "int64", "emb": th.Embedding(DIM)}, storage_options=opts)
    ds.append({"id": np.arange(800), "emb": x})
    ds.create_index("emb", progress=False)
    again = th.open(uri, storage_options=opts)
    assert again.indexes[0].size_bytes > 800 * DIM * 4
    assert again.nearest("emb", x[17], k=1).column("id").to_pylist() == [17]


def test_bad_input_names_the_argument(ds_x: tuple[th.Dataset, np.ndarray]) -> None:
    ds, x = ds_x
    ds.create_index("emb", progress=False)
    with pytest.raises(
        VectorSearchError, match=r"query: has 3 values but the vectors of column 'emb' have 32"
    ):
        ds.nearest("emb", [1.0, 2.0, 3.0])
    q = x[0].copy()
    q[4] = np.nan
    with pytest.raises(VectorSearchError, match="query: value 4 is nan"):
        ds.nearest("emb", q)
    for k in (0, -1, 2.5, True):
        with pytest.raises(VectorSearchError, match="k="):
            ds.nearest("emb", x[0], k=k)
    with pytest.raises(VectorSearchError, match="column='label'"):
        ds.create_index("label")
    with pytest.raises(VectorSearchError, match="column='name'"):
        ds.nearest("name", [1.0])
    with pytest.raises(VectorSearchError, match="column='nope'"):
        ds.nearest("nope", [1.0])
    with pytest.raises(
        VectorSearchError, match=r"metric='l2' does not match index 'emb_idx'.*metric='cosine'"
    ):
        ds.nearest("emb", x[0], metric="l2")
    with pytest.raises(VectorSearchError, match="metric='manhattan'"):
        ds.create_index("emb", name="other", metric="manhattan")
    with pytest.raises(VectorSearchError, match="kind='flat'"):
        ds.create_index("emb", name="other", kind="flat")
    with pytest.raises(VectorSearchError, match="nprobes=8 is not a parameter"):
        ds.create_index("emb", name="other", nprobes=8)
    with pytest.raises(IndexNotFoundError, match="no index 'nope'"):
        ds.drop_index("nope")
    with pytest.raises(IndexNotFoundError, match="no index 'nope'"):
        ds.nearest("emb", x[0], index="nope")
    assert isinstance(VectorSearchError("x"), th.TensorhouseError) and issubclass(
        VectorSearchError, ValueError
    )
    assert ds.version == 2  # nothing was committed by the failures


def test_null_vectors_are_neither_indexed_nor_returned(tmp_path: Any) -> None:
    ds = th.create(str(tmp_path / "n"), {"id": "int64", "emb": th.Embedding(2)})
    ds.append({"id": [0, 1, 2], "emb": [[1.0, 0.0], None, [0.0, 1.0]]})
    ds.create_index("emb", metric="l2", progress=False)
    assert ds.indexes[0].num_vectors == 2
    assert ds.nearest("emb", [0.0, 0.0], k=5).column("id").to_pylist() == [0, 2]
    assert ds.nearest("emb", [0.0, 0.0], k=5, exact=True).column("id").to_pylist() == [0, 2]


def test_index_follows_renames_and_checkpoints_and_ignores_dropped_columns(
    ds_x: tuple[th.Dataset, np.ndarray],
) -> None:
    ds, x = ds_x
    ds.create_index("emb", metric="l2", progress=False)
    ds.rename_column("emb", "vec")
    assert [(i.name, i.column, i.usable) for i in ds.indexes] == [("emb_idx", "vec", True)]
    ds.checkpoint()
    again = th.open(ds.uri)
    assert again.nearest("vec", x[8], k=1).column("id").to_pylist() == [8]
    assert again.nearest("vec", x[8], k=1, index="emb_idx").column("score").to_pylist() == [0.0]
    again.drop_column("vec")
    assert [(i.name, i.usable) for i in again.indexes] == [("emb_idx", False)]
    again.add_column("vec", th.Embedding(DIM))  # a new column of that name is not the indexed one
    with pytest.raises(VectorSearchError, match="covers column 'emb', not column='vec'"):
        again.nearest("vec", x[8], k=1, index="emb_idx")
    assert again.nearest("vec", x[8], k=1).num_rows == 0  # every vector is NULL: nothing to return


def test_the_index_with_the_asked_metric_is_used(ds_x: tuple[th.Dataset, np.ndarray]) -> None:
    ds, x = ds_x
    ds.create_index("emb", name="by_cos", metric="cosine", progress=False)
    ds.create_index("emb", name="by_l2", metric="l2", kind="hnsw", progress=False)
    q = clustered(1, seed=21)[0]
    assert ds.nearest("emb", q, k=5, metric="l2").column("id").to_pylist() == exact_ids(
        x, q, 5, "l2"
    )
    assert ds.nearest("emb", q, k=5, metric="cosine").column("id").to_pylist() == exact_ids(
        x, q, 5, "cosine"
    )
    with pytest.raises(VectorSearchError, match="metric='dot' does not match"):
        ds.nearest("emb", q, metric="dot")


def test_zero_vectors_are_never_cosine_neighbours(tmp_path: Any) -> None:
    ds = th.create(str(tmp_path / "z"), {"id": "int64", "emb": th.Embedding(2)})
    ds.append({"id": [0, 1, 2], "emb": [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]})
    ds.create_index("emb", progress=False)
    assert ds.indexes[0].num_vectors == 2
    for exact in (False, True):
        assert ds.nearest("emb", [1.0, 0.1], k=5, exact=exact).column("id").to_pylist() == [1, 2]
