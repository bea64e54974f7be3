-- Sampling by class: the first three images of every class (a balanced, deterministic sample).
-- Order by hash(id) instead of id for a pseudo-random sample (hash functions differ between engines).
-- tables: pets
-- engines: duckdb, datafusion
SELECT label, id
FROM (
    SELECT label, id, row_number() OVER (PARTITION BY label ORDER BY id) AS rk
    FROM pets
) AS ranked
WHERE rk <= 3
ORDER BY label, id;
