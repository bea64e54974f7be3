-- shows: box geometry on a BBox column (xyxy, coordinates in [0, 1]): box count, areas, the best
--        IoU against a query box, the IoU of the first box, and a greedy mean IoU against the
--        same boxes mapped into the frame [0, 0, 2, 2].
-- tables: pets
-- engines: duckdb, datafusion
SELECT id,
       num_boxes(boxes) AS n,
       box_area(boxes) AS areas,
       max_iou(boxes, [0, 0, 0.5, 0.5]) AS best_iou,
       box_iou(boxes[1], [0, 0, 0.5, 0.5]) AS first_iou,
       mean_iou(boxes, normalize_boxes(boxes, [0, 0, 2, 2])) AS shrunk_iou
FROM pets
ORDER BY id
LIMIT 5;
