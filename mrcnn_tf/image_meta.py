"""Layout of the image-meta vector (docs/CONTRACTS.md), shared by numpy and graph code.

``[image_id, original_image_shape(3), image_shape(3), window(4), scale, active_class_ids(K)]``
"""

# (field, length) in order; active_class_ids (NUM_CLASSES long) follows them.
META_FIELDS = (("image_id", 1), ("original_image_shape", 3), ("image_shape", 3),
               ("window", 4), ("scale", 1))
META_FIXED_LENGTH = sum(length for _, length in META_FIELDS)  # 12


def _column_ranges():
    ranges, start = {}, 0
    for name, length in META_FIELDS:
        ranges[name] = (start, start + length)
        start += length
    ranges["active_class_ids"] = (start, None)
    return ranges


# field -> (first column, end column or None for "to the end")
META_COLUMNS = _column_ranges()
