-- Join a tensor dataset with a Parquet metadata table: class balance per train/val split.
-- DuckDB can also read the file in place: JOIN read_parquet('meta.parquet') AS m ON ...
-- tables: pets, meta (parquet)
-- engines: duckdb, datafusion
SELECT m.split, p.label, count(*) AS n, sum(m.weight) AS weight
FROM pets AS p
JOIN meta AS m ON p.id = m.id
GROUP BY m.split, p.label
ORDER BY m.split, p.label;
