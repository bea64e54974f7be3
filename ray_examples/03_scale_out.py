"""How reads scale when the cluster grows: one read task per fragment, straight from object storage.

``th.ray.read`` plans on the driver (the log is read once; chunk statistics
drop fragments a filter cannot match) and sends each task only a fragment's
coordinates (URI, version, row range); every task reads its chunks from the
store itself, so adding nodes adds readers, with no data through the driver.
Run it against your cluster and bucket:

    RAY_ADDRESS=auto python ray_examples/03_scale_out.py s3://bucket/pets
    python ray_examples/03_scale_out.py            # a local two-node cluster (ray.cluster_utils) on a temp dir

Credentials come from ``storage_options`` or the usual AWS_* environment
variables of the workers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any

import ray

import tensorhouse as th
from tensorhouse.ray import TensorhouseDatasource


def count_pixels(batch: dict[str, Any]) -> dict[str, Any]:
    return {"pixels": [sum(int(img.size) for img in batch["image"])]}


def main(uri: str | None = None) -> dict[str, int]:
    if uri is None:
        from _data import pets

        uri = tempfile.mkdtemp() + "/pets"
        pets(uri, batches=6, per=32)
    plan = {
        "fragments": len(th.open(uri).snapshot.fragments),
        "read tasks": len(TensorhouseDatasource(uri).get_read_tasks(-1)),
        "read tasks for 'score > 0.9'": len(TensorhouseDatasource(uri, filter="score > 0.9").get_read_tasks(-1)),
        "read tasks at 32 KiB per task": len(TensorhouseDatasource(uri, task_bytes=32 << 10).get_read_tasks(-1)),
    }
    for k, v in plan.items():
        print(f"{k:>32}: {v}")
    th.ray.read(uri, columns=["score"]).map_batches(lambda b: b).materialize()  # start the workers first
    for blocks in (1, plan["read tasks"]):
        t0 = time.perf_counter()
        rds = th.ray.read(uri, columns=["image"], decode_images=True, override_num_blocks=blocks)
        counted = rds.map_batches(count_pixels, batch_format="numpy")  # decoding happens in the read tasks
        pixels = sum(int(b["pixels"].sum()) for b in counted.iter_batches(batch_format="numpy"))
        print(f"{blocks} read task(s): {pixels / 1e6:.1f} M decoded pixels in {time.perf_counter() - t0:.2f} s")
    print("nodes:", len(ray.nodes()))
    return plan


if __name__ == "__main__":
    if len(sys.argv) > 1:
        ray.init(include_dashboard=False)
        main(sys.argv[1])
    else:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address)
        try:
            main()
        finally:
            ray.shutdown()
            cluster.shutdown()
