-- shows: decode_image, image_resize (bilinear, from the JPEG blob) and image_to_gray;
--        the mean brightness of each image and its 4x4 thumbnail's shape.
-- tables: pets
-- engines: duckdb, datafusion
SELECT id,
       tensor_shape(decode_image(image)) AS decoded_shape,
       tensor_shape(image_resize(image, 4, 4)) AS thumb_shape,
       tensor_mean(image_to_gray(image)) AS brightness
FROM pets
ORDER BY id
LIMIT 5;
