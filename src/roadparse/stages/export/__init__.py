"""Outputs road engineers take away: GIS layers, measurements, COCO annotations, georeferenced drone JPEGs.

- :mod:`.rasters`: a ``roadparse predict`` folder as one label mosaic per frame, on the ground;
- :mod:`.vectors`: polygons per class and centre-lines of thin classes, written with pyogrio;
- :mod:`.measure`: m² per class, metres of sealing and marking, cone counts (CSV, JSON, HTML);
- :mod:`.coco`: COCO instance annotations (RLE) of predictions or pseudo-labels;
- :mod:`.georef`: approximate UTM footprints of nadir drone JPEGs from EXIF/XMP;
- :mod:`.run`: the ``roadparse export`` command's work.
"""
