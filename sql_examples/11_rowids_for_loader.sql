-- Row ids in SQL: a table registered with rowid=True has a _rowid column (fragment_id << 32 | offset), computed,
-- so this query reads only label and score chunks. (The loader needs no _rowid: th.loader(con.sql("SELECT image,
-- label FROM pets WHERE ...")) adds it itself and fetches images by row id.)
-- tables: pets (rowid=True)
-- engines: duckdb, datafusion
SELECT _rowid, label
FROM pets
WHERE label IN (1, 2) AND score < 0.5
ORDER BY _rowid;
