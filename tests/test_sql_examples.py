"""Every sql_examples/*.sql runs against the demo dataset in each engine its header names,
and matches an answer computed independently with numpy and pandas."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import datafusion
import duckdb
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from sql_fixtures import Demo, make_demo

import tensorhouse as th

EXAMPLES = Path(__file__).resolve().parent.parent / "sql_examples"
FILES = sorted(
    f for f in EXAMPLES.glob("*.sql") if not f.name.startswith("udf_")
)  # udf_*: tests/test_udfs_engines.py
KNOWN_TABLES = {"pets", "pets_v1", "pets_v2", "meta", "owners"}


def header(path: Path) -> tuple[list[str], list[str]]:
    """The ``-- tables:`` and ``-- engines:`` lines of an example (annotations in parentheses dropped)."""
    text = path.read_text()
    tables = re.search(r"^-- tables: (.+)$", text, re.M)
    engines = re.search(r"^-- engines: (.+)$", text, re.M)
    assert tables and engines, f"{path.name}: needs '-- tables:' and '-- engines:' header lines"
    names = [re.sub(r"\(.*?\)", "", t).strip() for t in re.split(r",(?![^(]*\))", tables.group(1))]
    return names, [e.strip() for e in engines.group(1).split(",")]


def with_rowid(path: Path) -> set[str]:
    """Tables the example registers with ``rowid=True`` (annotated ``(... rowid=True)``)."""
    line = re.search(r"^-- tables: (.+)$", path.read_text(), re.M)
    assert line
    return {
        re.sub(r"\(.*?\)", "", t).strip()
        for t in re.split(r",(?![^(]*\))", line.group(1))
        if "rowid=True" in t
    }


def sql_of(path: Path) -> str:
    return path.read_text().strip().rstrip(";")


# -- independent answers ---------------------------------------------------------------
def _frame(d: Demo, version: int = 3) -> pd.DataFrame:
    r = d.rows(version)
    return pd.DataFrame(
        {
            "_rowid": r["_rowid"],
            "id": r["id"],
            "label": r["label"],
            "score": r["score"],
            "caption": r["caption"],
            "n_boxes": [len(b) for b in r["boxes"]],
            "image_bytes": [len(b) for b in r["image"]],
            "points": [len(x) for x in r["depth"]],
            "corner": r["mask"][:, 0, 0],
        }
    )


def _topk(d: Demo) -> pd.DataFrame:
    r = d.rows()
    emb, ids = r["embedding"].astype(np.float64), r["id"]
    q = emb[ids == 7][0]
    sims = emb @ q / (np.linalg.norm(emb, axis=1) * np.linalg.norm(q))
    keep = ids != 7
    order = np.argsort(-sims[keep], kind="stable")[:5]
    return pd.DataFrame({"id": ids[keep][order], "similarity": sims[keep][order]})


def _count_by(df: pd.DataFrame, key: str, name: str) -> pd.DataFrame:
    return df.groupby(key).size().reset_index(name=name).sort_values(key).reset_index(drop=True)


def _f64_mean(s: pd.Series) -> float:
    return float(s.astype(np.float64).mean())


def _f64_sum(s: pd.Series) -> float:
    return float(s.astype(np.float64).sum())


def label_counts(d: Demo) -> pd.DataFrame:
    f = _frame(d)
    return (
        f[f.score >= 0.25]
        .groupby("label")
        .agg(n=("id", "size"), mean_score=("score", _f64_mean))
        .reset_index()
    )


def join_parquet_split(d: Demo) -> pd.DataFrame:
    f = _frame(d).merge(d.meta, on="id")
    return (
        f.groupby(["split", "label"]).agg(n=("id", "size"), weight=("weight", "sum")).reset_index()
    )


def join_delta_owners(d: Demo) -> pd.DataFrame:
    f = _frame(d).merge(d.owners, on="label")
    f = f[f.since >= 2020]
    return (
        f.groupby("owner").agg(images=("id", "size"), total_score=("score", _f64_sum)).reset_index()
    )


def time_travel_added(d: Demo) -> pd.DataFrame:
    now, then = _frame(d), _frame(d, 1)
    return _count_by(now[~now._rowid.isin(then._rowid)], "label", "added")


def time_travel_deleted(d: Demo) -> pd.DataFrame:
    now, then = _frame(d), _frame(d, 2)
    return then[~then._rowid.isin(now._rowid)][["id"]].sort_values("id").reset_index(drop=True)


def crowded_images(d: Demo) -> pd.DataFrame:
    f = _frame(d)
    return _count_by(f[f.n_boxes >= 2], "label", "crowded")


def sample_per_class(d: Demo) -> pd.DataFrame:
    f = _frame(d).sort_values(["label", "id"])
    return f.groupby("label").head(3)[["label", "id"]].reset_index(drop=True)


def rowids_for_loader(d: Demo) -> pd.DataFrame:
    f = _frame(d)
    f = f[f.label.isin([1, 2]) & (f.score < 0.5)]
    return f[["_rowid", "label"]].sort_values("_rowid").reset_index(drop=True)


def image_sizes(d: Demo) -> pd.DataFrame:
    agg = {
        "n": ("id", "size"),
        "min_bytes": ("image_bytes", "min"),
        "max_bytes": ("image_bytes", "max"),
    }
    return _frame(d).groupby("label").agg(**agg).reset_index()


def caption_search(d: Demo) -> pd.DataFrame:
    f = _frame(d)
    f = f[f.caption.str.contains("sleepy") & (f.label == 0)]
    return f[["id", "caption"]].sort_values("id").reset_index(drop=True)


def mask_corner(d: Demo) -> pd.DataFrame:
    f = _frame(d)
    return _count_by(f[f.corner == 1], "label", "corner_set")


EXPECTED: dict[str, Callable[[Demo], pd.DataFrame]] = {
    "01_label_counts": label_counts,
    "02_join_parquet_split": join_parquet_split,
    "03_join_delta_owners": join_delta_owners,
    "04_time_travel_added": time_travel_added,
    "05_time_travel_deleted": time_travel_deleted,
    "06_topk_similar_duckdb": _topk,
    "07_topk_similar_datafusion": _topk,
    "08_boxes_per_image": lambda d: _count_by(_frame(d), "n_boxes", "images"),
    "09_crowded_images": crowded_images,
    "10_sample_per_class": sample_per_class,
    "11_rowids_for_loader": rowids_for_loader,
    "12_image_sizes": image_sizes,
    "13_ragged_shapes": lambda d: _count_by(_frame(d), "points", "n"),
    "14_caption_search": caption_search,
    "15_mask_corner": mask_corner,
}


# -- engines ---------------------------------------------------------------------------
def run_duckdb(demo: Demo, sql: str, tables: list[str], rowid: set[str]) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        for t in tables:
            if t == "meta":
                con.sql(f"CREATE VIEW meta AS SELECT * FROM read_parquet('{demo.meta_path}')")
            elif t == "owners":
                con.register("owners", DeltaTable(demo.owners_path).to_pyarrow_dataset())
            else:
                th.duckdb.register(
                    con,
                    t,
                    demo.uri,
                    version={"pets": None, "pets_v1": 1, "pets_v2": 2}[t],
                    rowid=t in rowid,
                )
        return con.sql(sql).to_arrow_table().to_pandas()
    finally:
        con.close()


def run_datafusion(demo: Demo, sql: str, tables: list[str], rowid: set[str]) -> pd.DataFrame:
    ctx = datafusion.SessionContext()
    for t in tables:
        if t == "meta":
            ctx.register_parquet("meta", demo.meta_path)
        elif t == "owners":
            ctx.register_dataset("owners", DeltaTable(demo.owners_path).to_pyarrow_dataset())
        else:
            th.datafusion.register(
                ctx,
                t,
                demo.uri,
                version={"pets": None, "pets_v1": 1, "pets_v2": 2}[t],
                rowid=t in rowid,
            )
    return ctx.sql(sql).to_pandas()


RUNNERS: dict[str, Callable[[Demo, str, list[str], set[str]], pd.DataFrame]] = {
    "duckdb": run_duckdb,
    "datafusion": run_datafusion,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(tmp_path_factory.mktemp("examples"))


def test_there_are_a_dozen_documented_examples() -> None:
    assert len(FILES) >= 12
    assert {f.stem for f in FILES} == set(EXPECTED)
    for f in FILES:
        tables, engines = header(f)
        assert set(tables) <= KNOWN_TABLES, f.name
        assert engines and set(engines) <= set(RUNNERS), f.name
        assert f.read_text().startswith("-- "), (
            f"{f.name}: starts with a comment saying what it shows"
        )


CASES = [(f, e) for f in FILES for e in header(f)[1]]


@pytest.mark.parametrize(("path", "engine"), CASES, ids=[f"{f.stem}-{e}" for f, e in CASES])
def test_example(demo: Demo, path: Path, engine: str) -> None:
    tables, _ = header(path)
    got = RUNNERS[engine](demo, sql_of(path), tables, with_rowid(path))
    want = EXPECTED[path.stem](demo)
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False, rtol=1e-5
    )


def test_time_travel_through_the_table_function(demo: Demo) -> None:
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, "pets", demo.uri, rowid=True)
    th.datafusion.install(ctx, rowid=True)
    sql = sql_of(EXAMPLES / "04_time_travel_added.sql").replace(
        "pets_v1", f"tensorhouse('{demo.uri}', 1)"
    )
    pd.testing.assert_frame_equal(
        ctx.sql(sql).to_pandas(), EXPECTED["04_time_travel_added"](demo), check_dtype=False
    )
