-- Top-k similarity search: the 5 images whose embedding is closest (cosine) to image 7's.
-- embedding is an Embedding(8) column, a FLOAT[8] in DuckDB, which array_cosine_similarity takes.
-- tables: pets
-- engines: duckdb
SELECT p.id, array_cosine_similarity(p.embedding, q.embedding) AS similarity
FROM pets AS p, (SELECT embedding FROM pets WHERE id = 7) AS q
WHERE p.id <> 7
ORDER BY similarity DESC
LIMIT 5;
