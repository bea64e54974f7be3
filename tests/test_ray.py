"""th.ray on a real single-node Ray cluster (ray.init(num_cpus=2)): reads, writes, faults, concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

ray = pytest.importorskip("ray")

import tensorhouse as th  # noqa: E402
from tensorhouse.format.chunks.codecs import decode_image  # noqa: E402
from tensorhouse.ray.datasource import TensorhouseDatasource  # noqa: E402
from tests.ray_helpers import (  # noqa: E402
    KillingColumnSink,
    KillingSink,
    always_fail,
    data_files,
    double_emb,
    emb_plus,
    make,
    referenced,
    rows,
)


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    # address="local": a fresh instance, never a cluster someone else started on this machine.
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=200 << 20,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield
    finally:
        ray.shutdown()


def _ids(rds: Any) -> list[int]:
    return sorted(int(i) for b in rds.iter_batches(batch_format="numpy") for i in b["id"])


def test_import_tensorhouse_never_imports_ray() -> None:
    code = "import sys, tensorhouse; import tensorhouse.connector; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_read_gives_ray_tensor_types_and_every_row_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    ds = make(uri)
    rds = th.ray.read(uri)
    types = dict(zip(rds.schema().names, rds.schema().types, strict=True))
    assert "Tensor" in str(types["emb"]) and "VariableShaped" in str(types["boxes"])
    assert "VariableShaped" in str(types["pts"]) and types["img"] == pa.binary()
    got: dict[int, dict[str, Any]] = {}
    for b in rds.iter_batches(batch_format="numpy", batch_size=None):
        assert b["emb"].dtype == np.float32 and b["emb"].ndim == 2  # stacked, not objects
        for i in range(len(b["id"])):
            assert int(b["id"][i]) not in got
            got[int(b["id"][i])] = {k: v[i] for k, v in b.items()}
    assert sorted(got) == list(range(60))
    ref = ds.take(list(range(60)), decode=False)
    for i in (0, 7, 29, 59):
        np.testing.assert_array_equal(got[i]["emb"], ref["emb"][i])
        np.testing.assert_array_equal(got[i]["boxes"], ref["boxes"][i])
        np.testing.assert_array_equal(got[i]["pts"], ref["pts"][i])
        assert bytes(got[i]["img"]) == ref["img"][i]
        assert got[i]["caption"] == ref["caption"][i]


def test_read_tasks_follow_fragments_and_statistics_prune(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    make(uri, fragments=4, per=25)
    assert len(TensorhouseDatasource(uri).get_read_tasks(-1)) == 4  # one per fragment
    assert len(TensorhouseDatasource(uri).get_read_tasks(2)) == 2  # Ray asked for fewer
    pruned = TensorhouseDatasource(uri, filter="id >= 60 AND id < 70").get_read_tasks(-1)
    assert len(pruned) == 1  # min/max of id rule out three fragments
    small = TensorhouseDatasource(uri, columns=["id", "img"], task_bytes=4096).get_read_tasks(-1)
    assert len(small) > 4  # big fragments split into row ranges
    ids = sorted(int(i) for t in small for tbl in t() for i in tbl.column("id").to_pylist())
    assert ids == list(range(100))
    assert _ids(th.ray.read(uri, override_num_blocks=1)) == list(range(100))


def test_filters_and_projection_push_down(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    ds = make(uri)
    t = ds.to_table(["id", "label", "score"]).to_pandas()
    want = sorted(t[(t.label == 1) & (t.score > 0.35)].id)
    assert _ids(th.ray.read(uri, filter="label = 1 AND score > 0.35")) == want
    expr = (pc.field("label") == 1) & (pc.field("score") > 0.35)
    rds = th.ray.read(uri, filter=expr, columns=["id", "emb"])
    assert rds.schema().names == ["id", "emb"] and _ids(rds) == want
    from ray.data.expressions import col

    pushed = th.ray.read(uri).filter(expr=col("id") < 5).select_columns(["id", "label"])
    assert pushed.schema().names == ["id", "label"] and _ids(pushed) == [0, 1, 2, 3, 4]
    assert th.ray.read(uri, columns=["_rowid", "id"]).take(1)[0]["_rowid"] == 0
    assert th.ray.read(uri, filter="id < 0").count() == 0
    with pytest.raises(th.SchemaError, match="nope"):
        th.ray.read(uri, filter="nope = 1")
    with pytest.raises(th.SchemaError, match="unknown column 'nope'"):
        th.ray.read(uri, columns=["id", "nope"])


def test_time_travel_and_a_pinned_version(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    ds = make(uri, fragments=2)
    ds.tag("first", 1)
    mid = datetime.now(UTC)
    b = ds.branch("side")
    b.append(rows(500, 5))
    ds.delete(where="id < 10")
    assert th.ray.read(uri, version=1).count() == 20
    assert th.ray.read(uri, tag="first").count() == 20
    assert th.ray.read(uri, timestamp=mid).count() == 40
    assert _ids(th.ray.read(uri, branch="side"))[-5:] == [500, 501, 502, 503, 504]
    assert _ids(th.ray.read(uri)) == list(range(10, 40))  # deleted rows never show
    pinned = th.ray.read(uri)
    ds.append(rows(1000, 3))  # lands after planning: the job still reads its version
    assert _ids(pinned) == list(range(10, 40))


def test_decoded_images(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    ds = make(uri, fragments=1, per=6)
    b = th.ray.read(uri, columns=["id", "img"], decode_images=True).take_batch(
        6, batch_format="numpy"
    )
    raw = ds.take(list(range(6)), columns=["img"], decode=False)["img"]
    for i, img in zip(b["id"], b["img"], strict=True):
        np.testing.assert_array_equal(img, decode_image("jpeg", raw[int(i)]))
        assert img.dtype == np.uint8 and img.shape[2] == 3


def test_read_filter_map_write_back_every_row_once(tmp_path: Path) -> None:
    src = make(str(tmp_path / "src"), fragments=3)
    rds = th.ray.read(
        src.uri, columns=["id", "label", "emb", "img"], filter="label != 2"
    ).map_batches(double_emb)
    out = str(tmp_path / "out")
    assert th.ray.write(rds, out, mode="create", schema=src) == 1
    got = th.open(out)
    assert got.schema["label"] == src.schema["label"] and got.schema["img"] == th.Image("jpeg")
    assert got.schema["emb"] == th.Embedding(8)
    t = got.to_table()
    ids = t.column("id").to_pylist()
    assert len(ids) == len(set(ids)) and sorted(ids) == [i for i in range(60) if i % 3 != 2]
    ref = src.take(sorted(ids), columns=["emb", "img"], decode=False)
    order = np.argsort(ids)
    emb = np.stack(t.column("emb").to_numpy(zero_copy_only=False))[order]
    np.testing.assert_allclose(emb, ref["emb"] * 2)
    assert [t.column("img")[int(i)].as_py() for i in order] == ref[
        "img"
    ]  # JPEG bytes kept as they were


def test_write_infers_ray_tensor_types_and_respects_modes(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    items = [
        {"id": i, "vec": np.full(4, i, np.float32), "mask": np.ones((i % 3 + 1, 2), np.uint8)}
        for i in range(30)
    ]
    rds = ray.data.from_items(items, override_num_blocks=3)
    assert th.ray.write(rds, out) == 1  # append creates a missing dataset
    ds = th.open(out)
    assert ds.schema["vec"] == th.Tensor("float32", (4,)) and ds.schema["mask"] == th.Tensor(
        "uint8", (None, None)
    )
    assert len(ds) == 30 and ds.take([29])["mask"][0].shape == (3, 2)
    assert th.ray.write(ray.data.from_items(items[:5]), out) == 2
    assert len(th.open(out)) == 35
    with pytest.raises(th.DatasetExistsError):
        th.ray.write(rds, out, mode="create")
    assert th.ray.write(ray.data.from_items(items[:2]), out, mode="overwrite") == 3
    assert sorted(th.open(out).to_table(["id"]).column("id").to_pylist()) == [0, 1]
    emb = str(tmp_path / "e")
    th.ray.write(rds, emb, mode="create", schema={"vec": th.Embedding(4)})
    assert th.open(emb).schema["vec"] == th.Embedding(4)
    assert (
        th.ray.write(ray.data.from_items(items[:0] or [items[0]]).filter(lambda r: False), emb) == 1
    )  # nothing


def test_bad_rows_fail_the_job_and_commit_nothing(tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    th.create(out, {"id": "int64", "vec": th.Tensor("float32", (4,))})
    bad = ray.data.from_items(
        [{"id": i, "vec": np.zeros(3 if i == 7 else 4, np.float32)} for i in range(10)],
        override_num_blocks=1,
    )
    with pytest.raises(Exception, match="vec") as err:
        th.ray.write(bad, out)
    assert isinstance(err.value, th.TensorhouseError) or "SchemaError" in str(err.value)
    ds = th.open(out)
    assert ds.version == 0 and len(ds) == 0
    with pytest.raises(th.SchemaError, match="missing"):
        th.ray.write(ray.data.from_items([{"id": 1}]), out)


def test_task_killed_mid_write_leaves_the_version_and_the_retry_commits_once(
    tmp_path: Path,
) -> None:
    src = make(str(tmp_path / "src"), fragments=2)
    out = tmp_path / "out"
    th.create(str(out), src.schema)
    marker = tmp_path / "killed"
    ctx = ray.data.DataContext.get_current()
    saved = ctx.target_max_block_size
    ctx.target_max_block_size = (
        1024  # small blocks: each write task gets several, stages one, then dies
    )
    try:
        rds = th.ray.read(src.uri).map_batches(lambda b: b, batch_size=5, batch_format="numpy")
        sink = KillingSink(str(out), marker)
        rds.write_datasink(sink)
    finally:
        ctx.target_max_block_size = saved
    assert sink.version == 1
    assert marker.exists()  # a worker died with some of its chunks already uploaded
    ds = th.open(str(out))
    ids = ds.to_table(["id"]).column("id").to_pylist()
    assert sorted(ids) == list(range(40)) and ds.history()[-1].operation == "append"
    orphans = data_files(out) - referenced(ds)
    assert orphans  # the dead attempt's files: in no commit
    report = ds.vacuum(retention=timedelta(0), force=True)
    assert set(report.deleted) >= orphans and data_files(out) == referenced(ds)
    assert len(th.open(str(out))) == 40


def test_failed_job_leaves_the_dataset_at_its_version(tmp_path: Path) -> None:
    src = make(str(tmp_path / "src"), fragments=2)
    out = str(tmp_path / "out")
    th.create(out, src.schema).append(rows(900, 2))
    rds = th.ray.read(src.uri).map_batches(always_fail, batch_size=5)
    with pytest.raises(Exception, match="boom in the job"):
        th.ray.write(rds, out, group_bytes=1, ray_remote_args={"max_retries": 0})
    ds = th.open(out)
    assert ds.version == 1 and len(ds) == 2


def test_two_concurrent_write_jobs_both_commit(tmp_path: Path) -> None:
    src = make(str(tmp_path / "src"), fragments=2)
    out = str(tmp_path / "out")
    th.create(out, src.schema)
    results: list[int] = []
    errors: list[BaseException] = []

    def job(lo: int, hi: int) -> None:
        try:
            results.append(
                th.ray.write(th.ray.read(src.uri, filter=f"id >= {lo} AND id < {hi}"), out)
            )
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=job, args=(0, 25)),
        threading.Thread(target=job, args=(25, 40)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(results) == [1, 2]
    ids = th.open(out).to_table(["id"]).column("id").to_pylist()
    assert sorted(ids) == list(range(40))


def test_a_rerun_job_with_the_same_app_id_commits_nothing(tmp_path: Path) -> None:
    src = make(str(tmp_path / "src"), fragments=1)
    out = str(tmp_path / "out")
    first = th.ray.write(th.ray.read(src.uri), out, app_id="nightly", txn_version=7)
    again = th.ray.write(
        th.ray.read(src.uri), out, app_id="nightly", txn_version=7
    )  # the driver crashed, re-run
    assert first == again == 1 and len(th.open(out)) == 20
    assert th.ray.write(th.ray.read(src.uri), out, app_id="nightly", txn_version=8) == 2
    with pytest.raises(ValueError, match="both"):
        th.ray.write(th.ray.read(src.uri), out, app_id="nightly")


def test_memory_datasets_within_one_process() -> None:
    make("memory://ray-mem-src", fragments=2)
    rds = th.ray.read("memory://ray-mem-src", filter="id < 30")
    assert th.ray.write(rds, "memory://ray-mem-out", mode="create") == 1
    assert sorted(
        th.open("memory://ray-mem-out").to_table(["id"]).column("id").to_pylist()
    ) == list(range(30))


def test_from_arrow_of_an_arrow_dataset_points_to_th_ray_read(tmp_path: Path) -> None:
    # Ray's from_arrow iterates "a list of tables" and puts each in memory; the Arrow dataset is
    # not one (it would be loaded whole on the driver): a clear TypeError says what to use.
    make(str(tmp_path / "d"), fragments=2)
    ad = th.connector.arrow_dataset(str(tmp_path / "d"))
    with pytest.raises(TypeError, match=r"th\.ray\.read\(uri") as err:
        ray.data.from_arrow(ad)
    assert isinstance(err.value, th.errors.NotIterableError)
    assert not np.iterable(ad)
    assert pa.table(ad).num_rows == 40  # the Arrow C stream still works
    assert ray.data.from_arrow(ad.to_table(["id"])).count() == 40


def _embs(ds: th.Dataset) -> dict[int, np.ndarray]:
    t = ds.to_table(["id", "emb"])
    return {
        int(i): np.asarray(e, np.float32)
        for i, e in zip(t.column("id").to_pylist(), t.column("emb").to_pylist(), strict=True)
    }


def _check_added(ds: th.Dataset, src_emb: dict[int, np.ndarray], given: set[int]) -> None:
    """Every live row has its own new values when the job gave them, nulls otherwise."""
    t = ds.to_table(["id", "emb2", "tag"])
    for i, e, tag in zip(*(t.column(c).to_pylist() for c in ("id", "emb2", "tag")), strict=True):
        if i in given:
            np.testing.assert_allclose(np.asarray(e, np.float32), src_emb[i] * 2)
            assert tag == i * 10
        else:
            assert e is None and tag is None


def test_add_columns_by_rowid_to_existing_rows_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    ds = make(uri, fragments=3)
    ds.delete("id % 10 = 3 OR id = 59")  # deleted rows inside and at the end of fragments
    emb = _embs(ds)
    rds = th.ray.read(uri, columns=["_rowid", "id", "emb"], filter="id < 50", override_num_blocks=3)
    v = th.ray.add_columns(rds.map_batches(emb_plus, batch_size=7), uri)
    got = th.open(uri)
    assert v == got.version == ds.version + 1 and got.history()[-1].operation == "add_column"
    assert got.schema["emb2"] == th.Tensor("float32", (8,)) and got.columns[-2:] == ["emb2", "tag"]
    assert len(got) == len(ds) == 53
    _check_added(got, emb, {i for i in emb if i < 50})
    # The older version is untouched; duplicates and unknown rows commit nothing.
    assert th.open(uri, version=ds.version).columns == ds.columns
    twice = th.ray.read(uri, columns=["_rowid", "id", "emb"], filter="id < 5").map_batches(emb_plus)
    with pytest.raises(Exception, match=r"appears 2 times|two write tasks"):
        th.ray.add_columns(
            twice.union(twice).map_batches(lambda b: {**b, "x": b["tag"]}), uri, columns=["x"]
        )
    stray = ray.data.from_items(
        [{"_rowid": 0, "y": 1.0}, {"_rowid": (7 << 32) + 1, "y": 2.0}], override_num_blocks=1
    )
    files = data_files(Path(uri))
    with pytest.raises(Exception, match="not a row"):
        th.ray.add_columns(stray, uri)
    assert data_files(Path(uri)) == files  # checked before anything is written
    with pytest.raises(th.SchemaError, match="already exist"):
        th.ray.add_columns(stray, uri, columns=["tag"])
    assert th.open(uri).version == v


@pytest.mark.parametrize("reorder", ["split", "shuffle"])
def test_add_columns_from_rows_in_any_order(tmp_path: Path, reorder: str) -> None:
    # Fragments split across write tasks (segments meet end to end), or rows shuffled (every task
    # holds scattered rows of every fragment): each row still gets its own value, once.
    uri = str(tmp_path / "d")
    ds = make(uri, fragments=2)
    ds.delete("id IN (4, 5, 33)")
    rds = th.ray.read(uri, columns=["_rowid", "id", "emb"]).map_batches(emb_plus)
    rds = rds.repartition(5) if reorder == "split" else rds.random_shuffle(seed=3).repartition(3)
    th.ray.add_columns(rds, uri)
    got = th.open(uri)
    _check_added(got, _embs(ds), set(_embs(ds)))
    fid = got.snapshot.metadata.field_ids["emb2"]
    # Scattered rows' tiny segments are rewritten once by the driver: a few chunks per fragment.
    assert max(len(f.columns[fid]) for f in got.snapshot.fragments) <= 8


def test_add_columns_task_killed_mid_write_commits_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    ds = make(uri, fragments=2)
    emb = _embs(ds)
    marker = tmp_path / "killed"
    rds = th.ray.read(uri, columns=["_rowid", "id", "emb"]).map_batches(emb_plus)
    sink = KillingColumnSink(uri, marker)
    # An append that lands while the job runs: its rows read the new columns as null.
    th.open(uri).append(rows(100, 3))
    rds.write_datasink(sink)
    assert marker.exists() and sink.version == 4
    got = th.open(uri)
    assert len(got) == 43 and got.history()[-1].operation == "add_column"
    _check_added(got, emb, set(range(40)))
    orphans = data_files(Path(uri)) - referenced(got)
    assert orphans  # the killed attempt's chunk files: in no commit
    got.vacuum(retention=timedelta(0), force=True)
    assert data_files(Path(uri)) == referenced(got)
    _check_added(th.open(uri), emb, set(range(40)))


def test_add_columns_to_a_memory_dataset() -> None:
    ds = make("memory://ray-mem-cols", fragments=2)
    emb = _embs(ds)
    rds = th.ray.read("memory://ray-mem-cols", columns=["_rowid", "id", "emb"], filter="id >= 10")
    assert (
        th.ray.add_columns(
            rds.map_batches(emb_plus), "memory://ray-mem-cols", schema={"tag": "int32"}
        )
        == 3
    )
    got = th.open("memory://ray-mem-cols")
    assert got.schema["tag"] == th.Scalar("int32")
    _check_added(got, emb, set(range(10, 40)))


@pytest.mark.parametrize("name", ["01_decode_augment_torch", "02_embedding_column", "03_scale_out"])
def test_ray_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    folder = Path(__file__).resolve().parents[1] / "ray_examples"
    monkeypatch.syspath_prepend(str(folder))
    spec = importlib.util.spec_from_file_location(f"ray_example_{name[:2]}", folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    ray.cloudpickle.register_pickle_by_value(module)  # its functions run in the workers
    from _data import pets  # the examples' generated images

    if name == "02_embedding_column":
        result = module.main(str(tmp_path))
    else:
        uri = str(tmp_path / "pets")
        pets(uri, batches=6 if name == "03_scale_out" else 4, per=32)
        result = module.main(uri)
    if name == "01_decode_augment_torch":
        assert 0 < result < 128  # the filter keeps some of the 128 images
    elif name == "02_embedding_column":
        assert result == 72
    else:
        assert (
            result["read tasks"] == result["fragments"]
            and result["read tasks at 32 KiB per task"] > 6
        )
