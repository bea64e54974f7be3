-- Fixed N-d tensors: mask is Tensor("uint8", (4, 4)), a UTINYINT[4][4]; index it like a matrix (1-based).
-- Per class, how many masks have their top-left cell set.
-- tables: pets
-- engines: duckdb, datafusion
SELECT label, count(*) AS corner_set
FROM pets
WHERE mask[1][1] = 1
GROUP BY label
ORDER BY label;
