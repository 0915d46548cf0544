"""Reports along a road's centreline, from an exported survey (``roadparse report`` / ``roadparse compare``).

- :mod:`.survey`: an export GeoPackage with ground seen by several frames counted once;
- :mod:`.chainage`: centrelines, chainage intervals and their corridor cells;
- :mod:`.markings`: dashes and solid lines, their envelopes and wear;
- :mod:`.intervals`: the figures of each interval;
- :mod:`.outputs`: GeoPackage layers with QGIS styles, CSV, HTML strip charts;
- :mod:`.run`: ``roadparse report``; :mod:`.compare`: ``roadparse compare``.
"""
