"""pyarrow's own functions on a tensorhouse Arrow dataset: each works or raises a clear error, never crashes.

Every case runs in a subprocess: a segfault fails that case instead of killing the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tensorhouse as th

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import sys, pyarrow as pa, pyarrow.compute as pc, pyarrow.dataset as pads
import tensorhouse as th
from tensorhouse.connector.arrow_dataset import arrow_dataset
ad = arrow_dataset(sys.argv[1])
def refused(fn):
    try:
        fn()
    except th.UnsupportedError as err:
        assert "tensorhouse" in str(err) and ("ad.scanner" in str(err) or "DuckDB" in str(err)), str(err)
        print("REFUSED")
    else:
        raise AssertionError("not refused")
"""

# name -> (code, what it must print)
CASES = {
    "Scanner.from_dataset": (
        "refused(lambda: pads.Scanner.from_dataset(ad).to_table())",
        "REFUSED",
    ),
    "Scanner.from_dataset with columns and filter": (
        "refused(lambda: pads.Scanner.from_dataset(ad, columns=['label'], filter=pc.field('label') == 1).to_table())",
        "REFUSED",
    ),
    "Scanner.from_dataset to_reader": (
        "refused(lambda: pads.Scanner.from_dataset(ad).to_reader().read_all())",
        "REFUSED",
    ),
    "Scanner.from_dataset of an unpickled dataset": (
        "import pickle\n"
        "try:\n    pads.Scanner.from_dataset(pickle.loads(pickle.dumps(ad))).to_table()\n"
        "except (th.UnsupportedError, pa.ArrowInvalid) as err:\n    print('CLEAR', type(err).__name__)\n"
        "again = pickle.loads(pickle.dumps(ad)); print(again.count_rows())\n"
        "refused(lambda: pads.Scanner.from_dataset(again).to_table())",
        "REFUSED",
    ),
    "Scanner.from_fragment": (
        "try:\n    pads.Scanner.from_fragment(ad.get_fragments()[0])\nexcept TypeError:\n    print('TYPEERROR')",
        "TYPEERROR",
    ),
    "dataset of a list of datasets": (
        "refused(lambda: pads.dataset([ad, ad]).to_table())",
        "REFUSED",
    ),
    "UnionDataset": (
        "refused(lambda: pads.UnionDataset(ad.schema, [ad, ad]).to_table())",
        "REFUSED",
    ),
    "UnionDataset count_rows": (
        "refused(lambda: pads.UnionDataset(ad.schema, [ad]).count_rows())",
        "REFUSED",
    ),
    "acero ScanNodeOptions": (
        "import pyarrow.acero as ac\n"
        "refused(lambda: ac.Declaration('scan', ac.ScanNodeOptions(ad)).to_table())",
        "REFUSED",
    ),
    "dataset of one dataset": (
        "try:\n    pads.dataset(ad)\nexcept TypeError:\n    print('TYPEERROR')",
        "TYPEERROR",
    ),
    "pa.table": (
        "t = pa.table(ad); print(t.num_rows, t.column_names)",
        "5 ['label', 'emb']",
    ),
    "RecordBatchReader.from_stream": (
        "print(pa.RecordBatchReader.from_stream(ad).read_all().num_rows)",
        "5",
    ),
    "Scanner.from_batches": ("print(pads.Scanner.from_batches(ad).to_table().num_rows)", "5"),
    "write_dataset of the dataset": (
        "pads.write_dataset(ad, sys.argv[2], format='parquet')\n"
        "t = pads.dataset(sys.argv[2]).to_table(); print(t.num_rows, t.schema.field('emb').metadata is not None)",
        "5 True",
    ),
    "write_dataset of a scanner": (
        "pads.write_dataset(ad.scanner(columns=['label'], filter=pc.field('label') == 1), sys.argv[2], "
        "format='parquet')\nprint(pads.dataset(sys.argv[2]).to_table().column('label').to_pylist())",
        "[1, 1]",
    ),
    "write_dataset partitioned": (
        "pads.write_dataset(ad, sys.argv[2], format='parquet', partitioning=['label'], partitioning_flavor='hive')\n"
        "print(sorted(p.name for p in __import__('pathlib').Path(sys.argv[2]).iterdir()))",
        "['label=0', 'label=1']",
    ),
    "join from a pyarrow dataset": (
        "other = pads.dataset(pa.table({'label': pa.array([0, 1], pa.int32()), 'name': ['cat', 'dog']}))\n"
        "try:\n    other.join(ad, 'label').to_table()\nexcept (th.UnsupportedError, pa.ArrowInvalid) as err:\n"
        "    print('CLEAR', type(err).__name__)",
        "CLEAR",
    ),
    "acero Declaration from a scanner's stream": (
        "import pyarrow.acero as ac\n"
        "t = ac.Declaration('table_source', ac.TableSourceNodeOptions(pa.table(ad.scanner(columns=['label']))))\n"
        "print(t.to_table().num_rows)",
        "5",
    ),
    "InMemoryDataset": (
        "try:\n    pads.InMemoryDataset(ad)\nexcept TypeError:\n    print('TYPEERROR')",
        "TYPEERROR",
    ),
    "methods": (
        "f = pc.field('label') == 1\n"
        "print(ad.count_rows(filter=f), ad.head(2).num_rows, ad.take([0, 4]).num_rows, "
        "ad.filter(f).to_table().num_rows, len(list(ad.to_batches())), ad.children, ad.partition_expression)\n"
        "for m in ('join', 'join_asof', 'sort_by', 'replace_schema'):\n"
        "    refused(lambda: getattr(ad, m)(ad))",
        "2 2 2 2 1 [] true",
    ),
}


@pytest.fixture(scope="module")
def dataset_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("interop") / "pets")
    ds = th.create(uri, {"label": "int32", "emb": th.Embedding(2)})
    ds.append({"label": [0, 1, 1, 0, 0], "emb": np.arange(10, dtype="float32").reshape(5, 2)})
    return uri


@pytest.mark.parametrize("case", list(CASES))
def test_pyarrow_function_never_crashes(case: str, dataset_uri: str, tmp_path: Path) -> None:
    code, expected = CASES[case]
    script = PRELUDE + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", script, dataset_uri, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"{case}: exit {proc.returncode} (negative: killed by a signal)\n{proc.stderr}"
    )
    assert expected in proc.stdout, f"{case}: {proc.stdout!r}\n{proc.stderr}"
