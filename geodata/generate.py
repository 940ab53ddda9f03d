#!/usr/bin/env python3
"""Generate geodata/qingfeng-road.geojson: kerbside bays and planters on Qingfeng Road (庆丰路), Jiaxing.

Deterministic, standard library only.  Run from anywhere:

    python3 geodata/generate.py [--output FILE]

All geometry is laid out in a local metric frame and converted to WGS 84 lon/lat:

    x  metres along the road centre line, 0 at the west end, increasing eastwards
    y  metres across the road, positive on the north side, negative on the south side

The layout below (runs of bays, driveways, junction mouths, planters) is schematic
but internally consistent; the invariants are asserted before the file is written,
both on the exact local geometry and again on the rounded lon/lat output.
"""

from __future__ import annotations

import json
import math
import os
import sys

# ----------------------------------------------------------------------------
# Frame and projection
# ----------------------------------------------------------------------------

ROAD_ID = "qingfeng-road"
ROAD_LENGTH_M = 600.0
BEARING_DEG = 100.0          # heading of the centre line from west end to east end, clockwise from north
ORIGIN_LON = 120.78          # WGS 84 position of the road midpoint (x = ROAD_LENGTH_M / 2, y = 0)
ORIGIN_LAT = 30.76
DECIMALS = 7

PHI0 = math.radians(ORIGIN_LAT)
# Metres per degree from the WGS 84 ellipsoid at the origin latitude.
M_PER_DEG_LAT = (111132.92 - 559.82 * math.cos(2 * PHI0) + 1.175 * math.cos(4 * PHI0)
                 - 0.0023 * math.cos(6 * PHI0))
M_PER_DEG_LON = (111412.84 * math.cos(PHI0) - 93.5 * math.cos(3 * PHI0)
                 + 0.118 * math.cos(5 * PHI0))

_B = math.radians(BEARING_DEG)
# Unit vector along the road (east, north) and its left normal (the north side).
U_E, U_N = math.sin(_B), math.cos(_B)
N_E, N_N = -U_N, U_E
assert N_N > 0, "left normal must point to the north side"


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    """Local (x along, y across) metres -> (lon, lat) degrees, unrounded."""
    dx = x - ROAD_LENGTH_M / 2
    east = dx * U_E + y * N_E
    north = dx * U_N + y * N_N
    return ORIGIN_LON + east / M_PER_DEG_LON, ORIGIN_LAT + north / M_PER_DEG_LAT


def from_lonlat(lon: float, lat: float) -> tuple[float, float]:
    """Inverse of to_lonlat (the local frame is a rotation of the scaled lon/lat plane)."""
    east = (lon - ORIGIN_LON) * M_PER_DEG_LON
    north = (lat - ORIGIN_LAT) * M_PER_DEG_LAT
    return east * U_E + north * U_N + ROAD_LENGTH_M / 2, east * N_E + north * N_N


def position(x: float, y: float) -> list[float]:
    lon, lat = to_lonlat(x, y)
    return [round(lon, DECIMALS), round(lat, DECIMALS)]


# ----------------------------------------------------------------------------
# Cross-section and layout
# ----------------------------------------------------------------------------

CARRIAGEWAY_HALF_WIDTH = 7.0     # bays start here (kerb-side edge of the traffic lanes)
BAY_WIDTH = 2.5                  # across the road -> bays span 7.0 .. 9.5 m from the centre line
BAY_LENGTH = 6.0                 # along the road
BAY_GAP = 0.2                    # painted line between consecutive bays in a run
PLANTER_LENGTH = 1.5             # along the road
PLANTER_Y_INNER = 9.9            # footway-edge planters span 9.9 .. 10.5 m from the centre line
PLANTER_Y_OUTER = 10.5
BAY_OUTER = CARRIAGEWAY_HALF_WIDTH + BAY_WIDTH  # 9.5, the kerb line
MAX_BAY_OFFSET = 15.0

JUNCTION_SETBACK = 6.0           # clear kerb either side of a junction mouth

# Per side: junction mouths (x0, x1) and runs of bays (start x, number of bays), west to east.
# Gaps between runs that are not a junction are driveways.
LAYOUT = {
    "north": {
        "code": "N",
        "junctions": [(190.0, 210.0)],       # side street mouth about 1/3 along
        "runs": [(61.0, 10), (128.4, 9), (216.0, 13), (302.0, 12), (381.8, 12), (461.6, 12)],
    },
    "south": {
        "code": "S",
        "junctions": [(390.0, 410.0)],       # side street mouth about 2/3 along
        "runs": [(64.2, 12), (144.0, 12), (223.8, 12), (303.6, 13), (416.0, 9), (477.2, 10)],
    },
}
BAYS_PER_SIDE = 68
LOADING_RUNS = (2, 3, 4, 5)      # 0-based run indices whose first bay is a loading bay (4 per side)
ACCESSIBLE_PER_SIDE = 2          # the last bays on each side, at the shopping-centre (east) end
END_KERB_PLANTERS = 4            # per end-of-road kerb stretch per side
EXPECTED = {"bays": 136, "planters": 90, "loading": 8, "accessible": 4}
MUST_BE_STANDARD = ("QF-S-014", "QF-N-040")

KINDS = {
    "standard": {"max_stay_minutes": 120, "enforced_hours": "08:00-20:00"},
    "accessible": {"max_stay_minutes": None, "enforced_hours": None},
    "loading": {"max_stay_minutes": 30, "enforced_hours": "07:00-19:00"},
}


def run_length(n: int) -> float:
    return n * BAY_LENGTH + (n - 1) * BAY_GAP


def rect(x0: float, x1: float, y0: float, y1: float) -> list[tuple[float, float]]:
    """Counter-clockwise closed ring (x right/east-ish, y left/north-ish)."""
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def side_sign(side: str) -> float:
    return 1.0 if side == "north" else -1.0


def across(side: str, a: float, b: float) -> tuple[float, float]:
    """y interval for offsets a..b (a < b) from the centre line on the given side."""
    s = side_sign(side)
    ys = sorted((s * a, s * b))
    return ys[0], ys[1]


def build_layout():
    """Returns (bays, planters, gaps) in the local frame.

    bays:     list of dicts with id, side, kind, ring
    planters: list of dicts with id, side, ring
    gaps:     list of (side, kind, x0, x1) for junction mouths and driveways
    """
    bays, planters, gaps = [], [], []
    planter_specs = []  # (side, centre x)
    for side, spec in LAYOUT.items():
        code = spec["code"]
        runs = spec["runs"]
        junctions = spec["junctions"]
        assert sum(n for _, n in runs) == BAYS_PER_SIDE, (side, "bay count")
        for jx0, jx1 in junctions:
            gaps.append((side, "junction", jx0, jx1))
        spans = [(x0, x0 + run_length(n)) for x0, n in runs]
        # Classify the gap between consecutive runs: junction (with setbacks) or driveway.
        for (_, a1), (b0, _) in zip(spans, spans[1:]):
            inside = [j for j in junctions if a1 <= j[0] and j[1] <= b0]
            if inside:
                jx0, jx1 = inside[0]
                assert abs((jx0 - a1) - JUNCTION_SETBACK) < 1e-9 and abs((b0 - jx1) - JUNCTION_SETBACK) < 1e-9, \
                    (side, "junction setback", a1, b0)
                planter_specs.append((side, (a1 + jx0) / 2))   # one planter in each setback
                planter_specs.append((side, (jx1 + b0) / 2))
            else:
                width = b0 - a1
                assert 5.0 <= width + 1e-9 and width - 1e-9 <= 6.0, (side, "driveway width", a1, b0, width)
                gaps.append((side, "driveway", a1, b0))
        # End-of-road kerb stretches.
        for k0, k1 in ((0.0, spans[0][0]), (spans[-1][1], ROAD_LENGTH_M)):
            step = (k1 - k0) / (END_KERB_PLANTERS + 1)
            for i in range(1, END_KERB_PLANTERS + 1):
                planter_specs.append((side, k0 + i * step))
        # Bays, numbered west to east; a planter behind every other bay (1st, 3rd, ...) of each run.
        number = 0
        y0, y1 = across(side, CARRIAGEWAY_HALF_WIDTH, BAY_OUTER)
        for r, (x0, n) in enumerate(runs):
            for i in range(n):
                number += 1
                bx0 = x0 + i * (BAY_LENGTH + BAY_GAP)
                bx1 = bx0 + BAY_LENGTH
                if i == 0 and r in LOADING_RUNS:
                    kind = "loading"
                elif number > BAYS_PER_SIDE - ACCESSIBLE_PER_SIDE:
                    kind = "accessible"
                else:
                    kind = "standard"
                bays.append({"id": f"QF-{code}-{number:03d}", "side": side, "kind": kind,
                             "ring": rect(bx0, bx1, y0, y1)})
                if i % 2 == 0:
                    planter_specs.append((side, (bx0 + bx1) / 2))
    planter_specs.sort(key=lambda p: (0 if p[0] == "north" else 1, p[1]))
    for k, (side, cx) in enumerate(planter_specs, start=1):
        py0, py1 = across(side, PLANTER_Y_INNER, PLANTER_Y_OUTER)
        planters.append({"id": f"QF-P-{k:03d}", "side": side,
                         "ring": rect(cx - PLANTER_LENGTH / 2, cx + PLANTER_LENGTH / 2, py0, py1)})
    bays.sort(key=lambda b: (0 if b["side"] == "north" else 1, b["id"]))
    return bays, planters, gaps


# ----------------------------------------------------------------------------
# Geometry checks (local metric frame)
# ----------------------------------------------------------------------------

def signed_area(ring) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))


def _axes(poly):
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        yield (-(y1 - y0), x1 - x0)


def convex_disjoint(a, b) -> bool:
    """Separating-axis test; True iff the convex polygons have a strictly positive gap."""
    for ax, ay in list(_axes(a)) + list(_axes(b)):
        pa = [x * ax + y * ay for x, y in a]
        pb = [x * ax + y * ay for x, y in b]
        if max(pa) < min(pb) or max(pb) < min(pa):
            return True
    return False


def point_segment_distance(p, a, b) -> float:
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    t = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / L2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def polygon_distance(a, b) -> float:
    """Distance between two convex polygons (open vertex lists); 0 if they intersect or touch."""
    if not convex_disjoint(a, b):
        return 0.0
    d = math.inf
    for p, q in ((a, b), (b, a)):
        for v in p:
            for s0, s1 in zip(q, q[1:] + q[:1]):
                d = min(d, point_segment_distance(v, s0, s1))
    return d


def validate(road, bays, planters, gaps, tol: float, label: str) -> None:
    """Assert the invariants. Polygons are closed rings in the local frame; tol absorbs rounding."""
    (rx0, ry0), (rx1, ry1) = road[0], road[-1]
    road_len = math.hypot(rx1 - rx0, ry1 - ry0)
    ux, uy = (rx1 - rx0) / road_len, (ry1 - ry0) / road_len

    def fail(msg):
        raise AssertionError(f"[{label}] {msg}")

    if len(bays) != EXPECTED["bays"]:
        fail(f"expected {EXPECTED['bays']} bays, got {len(bays)}")
    if len(planters) != EXPECTED["planters"]:
        fail(f"expected {EXPECTED['planters']} planters, got {len(planters)}")
    ids = [ROAD_ID] + [b["id"] for b in bays] + [p["id"] for p in planters]
    if len(set(ids)) != len(ids):
        fail("duplicate feature ids")
    kinds = [b["kind"] for b in bays]
    for k in ("loading", "accessible"):
        if kinds.count(k) != EXPECTED[k]:
            fail(f"expected {EXPECTED[k]} {k} bays, got {kinds.count(k)}")
    by_id = {b["id"]: b for b in bays}
    for bid in MUST_BE_STANDARD:
        if by_id[bid]["kind"] != "standard":
            fail(f"{bid} must be standard, is {by_id[bid]['kind']}")

    for item in bays + planters:
        ring = item["ring"]
        if len(ring) != 5 or ring[0] != ring[-1]:
            fail(f"{item['id']}: ring is not a closed ring of 5 positions")
        if signed_area(ring) <= 0:
            fail(f"{item['id']}: exterior ring is not counter-clockwise")
        for x, y in ring:
            t = (x - rx0) * ux + (y - ry0) * uy
            if t < -tol or t > road_len + tol:
                fail(f"{item['id']}: extends beyond the road ends (t={t:.3f})")
            if item in bays and point_segment_distance((x, y), road[0], road[-1]) > MAX_BAY_OFFSET + tol:
                fail(f"{item['id']}: not within {MAX_BAY_OFFSET} m of the centre line")
        # Not in a driveway or junction mouth on its own side.
        ts = [(x - rx0) * ux + (y - ry0) * uy for x, y in ring]
        lo, hi = min(ts), max(ts)
        for side, gkind, g0, g1 in gaps:
            if side == item["side"] and hi > g0 + tol and lo < g1 - tol:  # bays may end at a gap edge
                fail(f"{item['id']}: sits in the {gkind} gap {g0:.1f}-{g1:.1f} on the {side} side")

    polys = [(b["id"], "bay", b["ring"][:-1]) for b in bays] + \
            [(p["id"], "planter", p["ring"][:-1]) for p in planters]
    # Required clearances: bay-bay = the painted line, planter-bay as specified, planter-planter > 0.
    need = {("bay", "bay"): BAY_GAP, ("bay", "planter"): 0.3, ("planter", "planter"): 1e-6}
    boxes = [(min(x for x, _ in p), max(x for x, _ in p), min(y for _, y in p), max(y for _, y in p))
             for _, _, p in polys]
    for i in range(len(polys)):
        for j in range(i + 1, len(polys)):
            bi, bj = boxes[i], boxes[j]
            if bi[1] + 1.0 < bj[0] or bj[1] + 1.0 < bi[0] or bi[3] + 1.0 < bj[2] or bj[3] + 1.0 < bi[2]:
                continue  # bounding boxes more than 1 m apart
            (ia, ka, pa), (ib, kb, pb) = polys[i], polys[j]
            d = polygon_distance(pa, pb)
            if d <= 0.0:
                fail(f"{ia} and {ib} overlap or touch")
            req = need[tuple(sorted((ka, kb)))]
            if d < req - tol:
                fail(f"{ia} and {ib} are {d:.3f} m apart, need >= {req} m")


# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------

def main() -> int:
    bays, planters, gaps = build_layout()
    road_local = [(0.0, 0.0), (ROAD_LENGTH_M, 0.0)]
    validate(road_local, bays, planters, gaps, tol=1e-9, label="local")

    road_coords = [position(x, y) for x, y in road_local]
    features = [{
        "type": "Feature",
        "id": ROAD_ID,
        "properties": {"feature_type": "road", "road_id": ROAD_ID, "name": "庆丰路", "name_en": "Qingfeng Road"},
        "geometry": {"type": "LineString", "coordinates": road_coords},
    }]
    for b in bays:
        features.append({
            "type": "Feature",
            "id": b["id"],
            "properties": {"feature_type": "bay", "bay_id": b["id"], "road_id": ROAD_ID,
                           "kind": b["kind"], **KINDS[b["kind"]], "side": b["side"]},
            "geometry": {"type": "Polygon", "coordinates": [[position(x, y) for x, y in b["ring"]]]},
        })
    for p in planters:
        features.append({
            "type": "Feature",
            "id": p["id"],
            "properties": {"feature_type": "barrier", "barrier_id": p["id"], "road_id": ROAD_ID, "kind": "planter"},
            "geometry": {"type": "Polygon", "coordinates": [[position(x, y) for x, y in p["ring"]]]},
        })
    fc = {"type": "FeatureCollection", "features": features}

    # Re-check everything on the rounded output, projected back to the local frame.
    for f in features[1:]:
        ring = f["geometry"]["coordinates"][0]
        if signed_area(ring) <= 0:  # orientation in lon/lat itself (RFC 7946 right-hand rule)
            raise AssertionError(f"{f['id']}: lon/lat exterior ring is not counter-clockwise")
    back = lambda coords: [from_lonlat(lon, lat) for lon, lat in coords]
    n_bays = len(bays)
    rb = [{**b, "ring": back(f["geometry"]["coordinates"][0])} for b, f in zip(bays, features[1:1 + n_bays])]
    rp = [{**p, "ring": back(f["geometry"]["coordinates"][0])} for p, f in zip(planters, features[1 + n_bays:])]
    road_back = back(road_coords)
    validate(road_back, rb, rp, gaps, tol=0.03, label="rounded lon/lat")
    road_len = math.dist(road_back[0], road_back[-1])

    text = json.dumps(fc, ensure_ascii=False, indent=1) + "\n"
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qingfeng-road.geojson")
    if "--output" in sys.argv:
        out = sys.argv[sys.argv.index("--output") + 1]
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    kinds = [b["kind"] for b in bays]
    print(f"wrote {os.path.basename(out)}: 1 road ({road_len:.2f} m), {len(bays)} bays "
          f"({kinds.count('standard')} standard, {kinds.count('loading')} loading, "
          f"{kinds.count('accessible')} accessible), {len(planters)} planters, "
          f"{len(features)} features, {len(text.encode('utf-8'))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
