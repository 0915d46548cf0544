"""Renders docs/export.png: a demo frame as a geotagged drone JPEG, its pseudo-labels exported to a
GeoPackage in UTM, the layers drawn from that file over the frame.

Usage: python docs/export_example.py DEMO_OUT [--frame STEM] [--out docs/export.png]

DEMO_OUT is a `roadparse demo --out DEMO_OUT` run that got past the pseudolabel stage. The
frame gets DJI-style EXIF/XMP (GPS position, a relative altitude at which a Phantom 4 Pro
camera gives the synthetic 0.25 cm/px, gimbal yaw 30°, pitch -90°) and is georeferenced
from it (roadparse.io.georef). Its roi tiles' pseudo-labels are written as a prediction
folder (each tile with its own UTM transform) and exported with `roadparse export --workdir`,
which pastes the tiles back into the frame.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

LAT, LON = (48.0, 8.0, 30.0), (11.0, 34.0, 12.0)


def geotag(frame: Path, out: Path) -> Path:
    """Writes ``frame`` as a JPEG with EXIF GPS/camera and DJI XMP altitude and gimbal angles."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "DJI", "FC6310"
    exif[0x8825] = {1: "N", 2: LAT, 3: "E", 4: LON, 6: 520.0}
    exif[0x8769] = {0x920A: 8.8}
    with Image.open(frame) as image:
        width = image.width
    altitude = 0.0025 * 8.8 * width / 13.2  # GSD 0.25 cm/px
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" '
           f'drone-dji:RelativeAltitude="+{altitude:.3f}" drone-dji:GimbalYawDegree="+30.0" '
           'drone-dji:GimbalPitchDegree="-90.0"/></rdf:RDF></x:xmpmeta>')
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(frame).convert("RGB").save(out, quality=92, exif=exif.tobytes(), xmp=xmp.encode())
    return out


def render(transform: tuple[float, ...], jpeg: Path, gpkg: Path, out: Path) -> None:
    """Draws the frame (placed by its pixel → UTM transform) with the polygon and centre-line layers of ``gpkg``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyogrio
    import shapely
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    from roadparse.io.labels import load_classes

    classes = load_classes()
    frame = np.asarray(Image.open(jpeg))
    height, width = frame.shape[:2]
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    # the frame drawn as a rotated image: warp its corners with the transform
    from matplotlib.transforms import Affine2D

    a, b, c, d, e, f = transform[:6]
    image = ax.imshow(frame, origin="upper", extent=(0, width, height, 0))
    image.set_transform(Affine2D.from_values(a, d, b, e, c, f) + ax.transData)
    for name, kind in pyogrio.list_layers(gpkg):
        if kind is None:  # a table without geometry: the QGIS styles (layer_styles)
            continue
        _, _, geometry, _ = pyogrio.raw.read(gpkg, layer=name)
        base = name.removesuffix("_centreline")
        colour = np.array(classes.colors[classes.index(base)]) / 255.0
        for geom in shapely.from_wkb(geometry):
            if name.endswith("_centreline"):
                for line in getattr(geom, "geoms", [geom]):
                    xs, ys = line.xy
                    ax.plot(xs, ys, color="black", linewidth=1.2)
            elif base not in ("road", "other"):
                for polygon in getattr(geom, "geoms", [geom]):
                    rings = [polygon.exterior, *polygon.interiors]
                    vertices = np.concatenate([np.asarray(r.coords) for r in rings])
                    codes = np.concatenate([[MplPath.MOVETO] + [MplPath.LINETO] * (len(r.coords) - 2) + [MplPath.CLOSEPOLY]
                                            for r in rings])
                    ax.add_patch(PathPatch(MplPath(vertices, codes), facecolor=(*colour, 0.45), edgecolor=colour, lw=1.0))
    corners = np.array([(a * x + b * y + c, d * x + e * y + f) for x, y in ((0, 0), (width, 0), (width, height), (0, height))])
    ax.set_xlim(corners[:, 0].min(), corners[:, 0].max())
    ax.set_ylim(corners[:, 1].min(), corners[:, 1].max())
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("easting (m, UTM 32N)")
    ax.set_ylabel("northing (m)")
    ax.set_title(f"{gpkg.name}: polygons per class (road, other hidden) and centre-lines (black) over {jpeg.name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    from pyproj import CRS

    from roadparse.artifacts import list_tiles
    from roadparse.cli import main as cli
    from roadparse.io.georef import georeference_frame
    from roadparse.io.geo import tile_transform
    from roadparse.workspace import Workspace

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_out", type=Path)
    parser.add_argument("--frame", default="frame_0000")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("export.png"))
    args = parser.parse_args()
    work, example = args.demo_out / "run", args.demo_out / "export-example"
    jpeg = geotag(args.demo_out / "data" / "frames" / f"{args.frame}.jpg", example / "flight" / f"{args.frame}.jpg")
    footprint = georeference_frame(jpeg)
    crs = CRS.from_epsg(footprint.epsg).to_wkt()
    preds = example / "preds"
    preds.mkdir(parents=True, exist_ok=True)
    records = []
    for tile in list_tiles(Workspace(work)):
        if Path(tile.frame).stem != args.frame:
            continue
        (preds / f"{tile.id}_label.png").write_bytes((work / "pseudolabel" / "labels" / f"{tile.id}.png").read_bytes())
        records.append({"input": str(tile.path), "crs": crs, "pixel_area_m2": footprint.gsd_m**2,
                        "transform": list(tile_transform(footprint.transform, *tile.offset)), "run_key": "pseudolabel"})
    (preds / "summary.json").write_text(json.dumps({"model": str(work / "pseudolabel"), "images": records}))
    cli.main(["export", str(preds), "--workdir", str(work), "--format", "gpkg", "--out", str(preds / "survey.gpkg")],
             standalone_mode=False)
    render(footprint.transform, jpeg, preds / "survey.gpkg", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
