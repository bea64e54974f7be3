-- Top-k similarity search in DataFusion, which has cosine_distance (not array_cosine_similarity).
-- tables: pets
-- engines: datafusion
SELECT p.id, 1 - cosine_distance(p.embedding, q.embedding) AS similarity
FROM pets AS p
CROSS JOIN (SELECT embedding FROM pets WHERE id = 7) AS q
WHERE p.id <> 7
ORDER BY similarity DESC
LIMIT 5;
