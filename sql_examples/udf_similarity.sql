-- shows: cosine_similarity, l2_distance and dot_product between every embedding and one query
--        embedding (image 7's): the query is one value for the whole scan, so each batch is one
--        matrix-vector product.
-- tables: pets
-- engines: duckdb, datafusion
SELECT p.id,
       cosine_similarity(p.embedding, q.embedding) AS cosine,
       l2_distance(p.embedding, q.embedding) AS l2,
       dot_product(p.embedding, q.embedding) AS dot
FROM pets AS p, (SELECT embedding FROM pets WHERE id = 7) AS q
WHERE p.id <> 7
ORDER BY cosine DESC
LIMIT 5;
