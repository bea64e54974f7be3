-- Time travel: rows added since version 1, found by comparing stable row ids of two registered versions.
-- Row ids are opt-in: register both with rowid=True, pets_v1 with th.duckdb.register(con, "pets_v1", uri,
-- version=1, rowid=True) (DataFusion: same, or FROM tensorhouse('uri', 1) after th.datafusion.install(ctx, rowid=True)).
-- tables: pets (rowid=True), pets_v1 (version 1, rowid=True)
-- engines: duckdb, datafusion
SELECT label, count(*) AS added
FROM pets
WHERE _rowid NOT IN (SELECT _rowid FROM pets_v1)
GROUP BY label
ORDER BY label;
