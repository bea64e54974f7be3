-- Text search on captions (LIKE is not pushed down; the engine filters after the scan).
-- tables: pets
-- engines: duckdb, datafusion
SELECT id, caption
FROM pets
WHERE caption LIKE '%sleepy%' AND label = 0
ORDER BY id;
