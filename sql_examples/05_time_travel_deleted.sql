-- Time travel: which rows of version 2 are gone now (deleted since), by row id.
-- Both registered with rowid=True (row ids are opt-in).
-- tables: pets (rowid=True), pets_v2 (version 2, rowid=True)
-- engines: duckdb, datafusion
SELECT v.id
FROM pets_v2 AS v
LEFT JOIN pets AS p ON v._rowid = p._rowid
WHERE p._rowid IS NULL
ORDER BY v.id;
