-- shows: l1_distance, linf_distance and hamming_distance (binary vectors: the first row of each
--        0/1 mask against a fixed code).
-- tables: pets
-- engines: duckdb, datafusion
SELECT id,
       l1_distance(embedding, [0, 0, 0, 0, 0, 0, 0, 0]) AS l1,
       linf_distance(embedding, [0, 0, 0, 0, 0, 0, 0, 0]) AS linf,
       hamming_distance(mask[1], [1, 0, 1, 0]) AS hamming
FROM pets
ORDER BY id
LIMIT 5;
