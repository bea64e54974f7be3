-- Counting boxes per image: a histogram of len(boxes). boxes is a BBox column, a FLOAT[4][] in DuckDB.
-- tables: pets
-- engines: duckdb
SELECT len(boxes) AS n_boxes, count(*) AS images
FROM pets
GROUP BY n_boxes
ORDER BY n_boxes;
