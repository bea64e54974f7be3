-- Filter and group by on labels: how many confident images each class has, and their mean score.
-- The WHERE clause on a float column is evaluated by the engine; label is an int32 class index.
-- tables: pets
-- engines: duckdb, datafusion
SELECT label, count(*) AS n, avg(score) AS mean_score
FROM pets
WHERE score >= 0.25
GROUP BY label
ORDER BY label;
