"""th.ray on a two-node Ray cluster (ray.cluster_utils.Cluster) with datasets on S3 (moto_server)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import tensorhouse as th  # noqa: E402
from tests.ray_helpers import KillingSink, make, rows  # noqa: E402


@pytest.fixture(scope="module")
def nodes(moto_server: str) -> Iterator[Any]:
    """Two Ray nodes of one CPU each; started after moto so their workers see its AWS_* variables."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": 100 << 20,
            "include_dashboard": False,
        },
    )
    cluster.add_node(num_cpus=1, object_store_memory=100 << 20)
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    # Functions of this test module travel by value: workers cannot import it by name.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster.wait_for_nodes()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _s3(s3_uri: tuple[str, dict[str, Any]], name: str) -> tuple[str, dict[str, Any]]:
    uri, options = s3_uri
    return uri.rsplit("/", 1)[0] + "/" + name, options


def _tag_node(batch: dict[str, Any]) -> dict[str, Any]:
    node = ray.get_runtime_context().get_node_id()
    return {"id": batch["id"], "emb": batch["emb"] + 1, "node": np.array([node] * len(batch["id"]))}


def test_s3_read_filter_map_write_back_every_row_once(
    nodes: Any, s3_uri: tuple[str, dict[str, Any]]
) -> None:
    src_uri, opts = _s3(s3_uri, "src")
    src = make(src_uri, fragments=4, per=15, storage_options=opts)
    rds = th.ray.read(src_uri, columns=["id", "emb"], filter="id % 5 <> 0", storage_options=opts)
    out_uri, _ = _s3(s3_uri, "out")
    version = th.ray.write(
        rds.map_batches(_tag_node, batch_format="numpy"),
        out_uri,
        mode="create",
        schema={"emb": th.Embedding(8)},
        storage_options=opts,
    )
    assert version == 1
    out = th.open(out_uri, storage_options=opts).to_table()
    ids = out.column("id").to_pylist()
    assert len(ids) == len(set(ids)) and sorted(ids) == [i for i in range(60) if i % 5]
    ref = src.take(sorted(ids), columns=["emb"])["emb"]
    emb = np.stack(out.column("emb").to_numpy(zero_copy_only=False))[np.argsort(ids)]
    np.testing.assert_allclose(emb, ref + 1)
    assert len(set(out.column("node").to_pylist())) == 2  # read tasks ran on both nodes


def test_s3_time_travel(nodes: Any, s3_uri: tuple[str, dict[str, Any]]) -> None:
    uri, opts = s3_uri
    ds = make(uri, fragments=2, per=10, storage_options=opts)
    ds.tag("v1", 1)
    ds.delete(where="id >= 15")
    assert th.ray.read(uri, version=2, storage_options=opts).count() == 20
    assert th.ray.read(uri, tag="v1", storage_options=opts).count() == 10
    assert sorted(th.ray.read(uri, storage_options=opts).to_pandas()["id"]) == list(range(15))


def _emb_plus_node(batch: dict[str, Any]) -> dict[str, Any]:
    node = ray.get_runtime_context().get_node_id()
    return {
        "_rowid": batch["_rowid"],
        "emb2": batch["emb"] * 2,
        "node": np.array([node] * len(batch["_rowid"])),
    }


def test_s3_add_columns_from_both_nodes(nodes: Any, s3_uri: tuple[str, dict[str, Any]]) -> None:
    uri, opts = s3_uri
    ds = make(uri, fragments=4, per=10, storage_options=opts)
    ds.delete(where="id % 7 = 0")
    rds = th.ray.read(uri, columns=["_rowid", "emb"], storage_options=opts)
    version = th.ray.add_columns(
        rds.map_batches(_emb_plus_node, batch_format="numpy"), uri, storage_options=opts
    )
    got = th.open(uri, storage_options=opts)
    assert version == got.version == 6 and len(got) == 34
    t = got.to_table(["emb", "emb2", "node"])
    emb = np.stack(t.column("emb").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.stack(t.column("emb2").to_numpy(zero_copy_only=False)), emb * 2)
    assert len(set(t.column("node").to_pylist())) == 2  # values computed and staged on both nodes


# The single-node module runs the same two checks by default; here they also cross nodes and S3.
@pytest.mark.slow
def test_s3_worker_killed_mid_write_commits_once(
    nodes: Any, s3_uri: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    src_uri, opts = _s3(s3_uri, "src")
    src = make(src_uri, fragments=2, per=10, storage_options=opts)
    out_uri, _ = _s3(s3_uri, "out")
    th.create(out_uri, src.schema, storage_options=opts).append(rows(500, 3))
    ctx = ray.data.DataContext.get_current()
    saved = ctx.target_max_block_size
    ctx.target_max_block_size = 1024  # small blocks: each write task stages one group, then dies
    try:
        rds = th.ray.read(src_uri, storage_options=opts).map_batches(lambda b: b, batch_size=4)
        sink = KillingSink(out_uri, tmp_path / "killed", storage_options=opts)
        rds.write_datasink(sink)
    finally:
        ctx.target_max_block_size = saved
    assert (tmp_path / "killed").exists() and sink.version == 2
    ds = th.open(out_uri, storage_options=opts)
    assert sorted(ds.to_table(["id"]).column("id").to_pylist()) == [*range(20), 500, 501, 502]
    report = ds.vacuum(retention=timedelta(0), force=True, dry_run=True)
    assert report.deleted  # the dead attempt's chunk files, referenced by no version


@pytest.mark.slow
def test_s3_two_concurrent_write_jobs(nodes: Any, s3_uri: tuple[str, dict[str, Any]]) -> None:
    src_uri, opts = _s3(s3_uri, "src")
    src = make(src_uri, fragments=2, per=10, storage_options=opts)
    out_uri, _ = _s3(s3_uri, "out")
    th.create(out_uri, src.schema, storage_options=opts)
    versions: list[int] = []
    errors: list[BaseException] = []

    def job(where: str) -> None:
        try:
            rds = th.ray.read(src_uri, filter=where, storage_options=opts)
            versions.append(th.ray.write(rds, out_uri, storage_options=opts))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=job, args=(w,)) for w in ("id < 8", "id >= 8")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(versions) == [1, 2]
    ds = th.open(out_uri, storage_options=opts)
    assert sorted(ds.to_table(["id"]).column("id").to_pylist()) == list(range(20))
    assert [h.operation for h in ds.history()] == ["create", "append", "append"]
