-- Images with at least two boxes, per class; array_length works on the box list in both engines.
-- tables: pets
-- engines: duckdb, datafusion
SELECT label, count(*) AS crowded
FROM pets
WHERE array_length(boxes) >= 2
GROUP BY label
ORDER BY label;
