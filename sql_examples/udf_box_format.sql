-- shows: the box format argument: the same numbers read as COCO boxes (x, y, width, height).
--        Engines do not hand field metadata to UDFs, so the format is passed explicitly.
-- tables: pets
-- engines: duckdb, datafusion
SELECT id,
       box_area(boxes, 'xywh') AS areas_xywh,
       max_iou(boxes, [0, 0, 0.5, 0.5], 'xywh') AS best_iou_xywh
FROM pets
WHERE num_boxes(boxes) > 0
ORDER BY id
LIMIT 5;
