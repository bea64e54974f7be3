-- Ragged tensors: depth is Tensor("float32", (None, 3)), a STRUCT(data FLOAT[], shape INTEGER[2]);
-- count samples by their number of 3-d points (the first dimension of each sample's shape).
-- tables: pets
-- engines: duckdb
SELECT depth.shape[1] AS points, count(*) AS n
FROM pets
GROUP BY points
ORDER BY points;
