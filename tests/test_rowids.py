"""The loader's query rewrite (connector/rowids.py): what it accepts, what it refuses, and why."""

from __future__ import annotations

import pytest

from tensorhouse.connector.rowids import LateMaterializationError, rowid_query, tables_in

C = "__tensorhouse_pets_0a1b2c3d"
TABLES = {"pets": C}
HEAVY = {C: {"image", "emb"}}


def rewrite(sql: str, output: list[str]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    q = rowid_query(sql, dialect="duckdb", tables=TABLES, heavy=HEAVY, output=output)
    return q.sql, q.heavy, q.light


def test_plain_select_with_alias_join_cte_and_order() -> None:
    sql, heavy, light = rewrite(
        "WITH m AS (SELECT * FROM meta) SELECT p.image, p.label, m.split AS s FROM pets AS p "
        "JOIN m ON p.id = m.id WHERE m.split = 'train' ORDER BY p.label LIMIT 5",
        ["image", "label", "s"],
    )
    assert heavy == ("image",) and light == ("label", "s")
    assert f'"{C}" AS "p"' in sql and '"p"."_rowid" AS "__th_rowid"' in sql
    assert "ORDER BY p.label LIMIT 5" in sql


def test_star_and_renamed_heavy_columns() -> None:
    _, heavy, light = rewrite("SELECT * FROM pets WHERE label = 1", ["image", "label", "emb"])
    assert heavy == ("image", "emb") and light == ("label",)
    # a computed or renamed column is the engine's to compute: light
    _, heavy, light = rewrite("SELECT image AS picture, emb FROM pets", ["picture", "emb"])
    assert heavy == ("emb",) and light == ("picture",)
    # a self-join: heavy columns of one side by row id, the other side's (renamed) from the engine
    _, heavy, light = rewrite(
        "SELECT a.image, b.image AS other FROM pets a JOIN pets b ON a.id = b.id + 1",
        ["image", "other"],
    )
    assert heavy == ("image",) and light == ("other",)


def test_a_cte_shadowing_the_name_is_not_the_table() -> None:
    with pytest.raises(LateMaterializationError, match="names no registered"):
        rewrite("WITH pets AS (SELECT 1 AS x) SELECT x FROM pets", ["x"])


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT label, count(*) FROM pets GROUP BY label", "GROUP"),
        ("SELECT DISTINCT label FROM pets", "DISTINCT"),
        ("SELECT image FROM pets UNION ALL SELECT image FROM pets", "UNION"),
        ("SELECT max(label) FROM pets", "aggregates"),
        ("SELECT a.image, b.emb FROM pets a JOIN pets b ON a.id = b.id", "more than one"),
        ("SELECT 1", "names no registered"),
        ("SELEC image FROM pets", "did not parse"),
    ],
)
def test_refused_with_a_reason(sql: str, why: str) -> None:
    with pytest.raises(LateMaterializationError, match=why):
        rewrite(sql, ["image", "emb"] if "emb" in sql else ["image"])


def test_tables_in_reads_views_and_skips_ctes() -> None:
    assert tables_in(
        f"CREATE TEMP VIEW pets AS SELECT * EXCLUDE (_rowid) FROM {C};", dialect="duckdb"
    ) == {C.lower()}
    assert tables_in("WITH a AS (SELECT 1) SELECT * FROM a JOIN b USING (x)", dialect="duckdb") == {
        "b"
    }
