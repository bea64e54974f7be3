-- Join with a Delta Lake table (registered from deltalake.DeltaTable(path).to_pyarrow_dataset()):
-- images and total score per annotator who owns a class since 2020 or later.
-- tables: pets, owners (delta)
-- engines: duckdb, datafusion
SELECT o.owner, count(*) AS images, sum(p.score) AS total_score
FROM pets AS p
JOIN owners AS o ON p.label = o.label
WHERE o.since >= 2020
GROUP BY o.owner
ORDER BY o.owner;
