-- shows: tensor_slice crops decoded images with numpy syntax (rows 2..5, every other column, channel 0);
--        the result is a tensor STRUCT(data DOUBLE[], shape INTEGER[]).
-- tables: pets
-- engines: duckdb, datafusion
SELECT id, tensor_slice(decode_image(image), '[2:6, ::2, 0]') AS crop
FROM pets
ORDER BY id
LIMIT 5;
