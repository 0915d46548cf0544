"""What the README of an urban dataset says about its classes and scenes."""

URBAN_DESCRIPTIONS = {
    "road": "city asphalt incl. utility patches, stains, unsealed hairline cracks, manhole covers and "
            "their concrete collars, wet patches with sky reflections, worn-off paint, shadows on it",
    "white_marking": "zebra crosswalk bars, stop lines, lane arrows, dashed centre line, parking-bay lines "
                     "and T-marks (visible paint only)",
    "yellow_marking": "double yellow centre line, or a yellow no-parking line along a kerb (visible paint only)",
    "guardrail": "bright galvanised W-beam 40-60 cm wide from above (a median barrier, or behind a kerb "
                 "with its posts): mottled near-white zinc, easily taken for worn white paint",
    "crack_sealing": "dark glossy sealant: overbanded joints around utility patches (4-8 cm) and sealed "
                     "cracks (2-5 cm)",
    "traffic_cone": "cones 28-38 cm across from above: red-orange, two silver bands, black square base; "
                    "a few frames only",
    "other": "kerbs, paver sidewalks, parked cars, lawns and flat roofs beyond the sidewalks",
}

URBAN_SCENE = """## Scene (style `urban`)

A straight street at any angle to the frame, seen from anywhere over its carriageway.
Across it: sidewalk (concrete or red pavers in running bond, 1.8-3.5 m) | kerb (15-30 cm,
darker face) | parking lane (2-2.4 m, 60 % / 45 % of sides) | lane (2.9-3.4 m) | centre line
| lane | parking | kerb | sidewalk, with a lawn or a flat roof beyond. The centre line is a
double yellow line (65 %) or a dashed white one (then a yellow no-parking line runs along a
kerb). 70 % of frames hold a zebra crosswalk (bars 0.4-0.6 m, 2.5-4 m long) with stop
lines and lane arrows (3-5 m, some with a turn branch) before it; otherwise half hold
arrows. Parked cars (3.9-4.9 m, common paint colours) fill 75 % of the parking slots, none
within 5 m of the crosswalk. 85 % of frames have a guardrail: a median barrier between two
yellow lines, or a rail with posts behind a kerb without parking; it has a gap at the
crosswalk. Manholes (0-2, 0.6-0.8 m) are labelled road; 60 % of frames have a group of 1-5
cones (around a manhole when there is one). Objects keep their size in metres at any GSD
(meant for 0.25-1 cm/px, default 0.5). Not every class is in every frame.

## What is hard (as in real data)

- Hard shadows, labelled as what lies under them, lit blue by the sky: a building edge,
  tree crowns with sun flecks, lamp poles, cars, the guardrail, the cones' long triangles
  (their length follows a sun elevation of 25-60 degrees).
- Light things that are not white paint: kerb tops, galvanised guardrails, white and silver
  cars, concrete pavers, sky reflections on wet asphalt.
- Dark things that are not crack sealing: hairline cracks, manhole covers, car windows,
  tyre and oil stains, paver joints, pole shadows.
- Worn markings: 5-35 % of the paint is erased in blotches (erased parts are road).
- Wet asphalt (45 % of frames): darker, with specular sky reflections.
- A warm, cool or neutral white balance, stronger contrast, exposure, blur and noise.

Labels come from the same rasterised geometry that is painted (pixel centres inside the
shape, no anti-aliasing), so they line up with the pixels exactly.
"""
