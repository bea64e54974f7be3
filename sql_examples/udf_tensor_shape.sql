-- shows: tensor_shape / tensor_ndim / tensor_size on a ragged tensor (depth: n x 3 points) and a
--        fixed one (mask: UTINYINT[4][4]); tensor_shape of a slice shows the dropped axis.
-- tables: pets
-- engines: duckdb, datafusion
SELECT id,
       tensor_shape(depth) AS depth_shape,
       tensor_size(depth) AS depth_size,
       tensor_ndim(mask) AS mask_ndim,
       tensor_shape(tensor_slice(mask, '[1:, -1]')) AS sliced_shape
FROM pets
ORDER BY id
LIMIT 5;
