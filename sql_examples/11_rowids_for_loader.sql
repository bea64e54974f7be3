-- Late materialization: select row ids and light columns only; the loader fetches images by _rowid.
-- _rowid (fragment_id << 32 | offset) is computed, so this query reads only label and score chunks.
-- tables: pets
-- engines: duckdb, datafusion
SELECT _rowid, label
FROM pets
WHERE label IN (1, 2) AND score < 0.5
ORDER BY _rowid;
