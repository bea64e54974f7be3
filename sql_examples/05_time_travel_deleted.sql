-- Time travel: which rows of version 2 are gone now (deleted since), by row id.
-- tables: pets, pets_v2 (version 2)
-- engines: duckdb, datafusion
SELECT v.id
FROM pets_v2 AS v
LEFT JOIN pets AS p ON v._rowid = p._rowid
WHERE p._rowid IS NULL
ORDER BY v.id;
