-- Encoded image sizes per class: images travel as JPEG bytes (BLOB), decoded later by the loader.
-- tables: pets
-- engines: duckdb
SELECT label, count(*) AS n, min(octet_length(image)) AS min_bytes, max(octet_length(image)) AS max_bytes
FROM pets
GROUP BY label
ORDER BY label;
