"""Training of segmentation networks on tiles and (pseudo-)labels: augmentation, data, loop."""
