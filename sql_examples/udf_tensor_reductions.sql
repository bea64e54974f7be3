-- shows: whole-tensor reductions (DOUBLE) and reductions over one axis (tensors): the centroid of
--        each sample's 3-d points is tensor_mean_axis(depth, 0); per-point extremes use axis -1.
-- tables: pets
-- engines: duckdb, datafusion
SELECT id,
       tensor_sum(mask) AS pixels_set,
       tensor_mean(depth) AS mean,
       tensor_min(depth) AS lo,
       tensor_max(depth) AS hi,
       tensor_std(depth) AS spread,
       tensor_mean_axis(depth, 0)['data'] AS centroid,
       tensor_sum_axis(mask, 1)['data'] AS row_counts,
       tensor_min_axis(depth, -1)['shape'] AS min_shape,
       tensor_max_axis(depth, -1)['shape'] AS max_shape,
       tensor_std_axis(depth, 0)['data'] AS axis_spread
FROM pets
ORDER BY id
LIMIT 5;
