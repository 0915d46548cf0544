"""Reading and writing images, masks (COCO RLE) and label maps."""
