"""Centre-lines of thin regions (lane markings, crack sealing) and their length: pure array code.

A region's skeleton (scikit-image) has a side branch wherever its edge has a bump, and it
stops about half a width short of each end; measured as it is, a ragged 15 cm marking comes
out tens of per cent too long and far too narrow. :func:`centre_line_paths` therefore:

1. fills holes smaller than the region is wide (specks of road inside a marking) and evens
   the edge with a blur of :data:`EDGE_SMOOTHING` × the largest half-width before thinning
   (not where the blur would cut the region in two at a thin neck);
2. prunes spurs: end branches (from a free end to a junction) shorter than ``spur_factor``
   times the local width (twice the largest distance to the edge near the junction),
   repeatedly, so a bump on the edge adds nothing and a real branch (a fork of crack
   sealing longer than the sealing is wide) stays; little loops of the thinning go too;
3. smooths each line along its length (Gaussian, sigma = its median half-width, at least
   :data:`MIN_SMOOTHING_PX`) so the pixel staircase and the wobble of ragged edges do not
   count as length; line ends stay where they are;
4. extends each free end along its direction to the region's edge (the half width the
   skeleton stops short).

Coordinates are (x, y) = (col + 0.5, row + 0.5) of pixel centres, pixel corners at integers;
lengths are in pixels. A region's width is its area over its centre-line length
(:func:`mean_width`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SMOOTHING_PX = 2.0
"""Smallest Gaussian sigma (pixels) along a line: enough to straighten the 8-connected staircase."""
SPUR_FACTOR = 1.0
"""End branches shorter than this times the local width are pruned."""
EDGE_SMOOTHING = 0.3
"""Gaussian sigma, as a share of the region's largest half-width, of the blur that evens its edge before thinning."""
_STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))


@dataclass(frozen=True)
class SkeletonGraph:
    """A one-pixel-wide skeleton as branches between nodes.

    A node is a group of touching pixels (diagonals too) whose number of neighbours is not 2 (a
    free end, a junction, or the corners of a 2 × 2 block the thinning left); a branch is the path of
    pixels from a node to a node (or round a loop without nodes: first = last pixel).
    """

    pixels: np.ndarray
    """(N, 2) int64 (row, col)"""
    node: np.ndarray
    """(N,) int64 node id of each pixel, -1 for pixels inside a branch"""
    branches: list[list[int]]
    """pixel indices of each branch, end to end"""

    def degrees(self) -> np.ndarray:
        """Returns the (nodes,) int64 number of branch ends at each node (a loop counts twice)."""
        ends = [self.node[b[i]] for b in self.branches for i in (0, -1) if self.node[b[i]] >= 0]
        return np.bincount(np.asarray(ends, dtype=np.int64), minlength=int(self.node.max()) + 1)

    def centroid(self, node: int) -> np.ndarray:
        """Returns the (x, y) centre of a node's pixels."""
        centre: np.ndarray = self.pixels[self.node == node][:, ::-1].mean(axis=0) + 0.5
        return centre


def _neighbour_index(linear: np.ndarray, offset: int) -> np.ndarray:
    """Returns, for sorted (N,) linear pixel indices, the index of the pixel ``offset`` further on, or -1 where none."""
    target = linear + offset
    found = np.minimum(np.searchsorted(linear, target), len(linear) - 1)
    return np.where(linear[found] == target, found, -1)


def skeleton_edges(skeleton: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns ((N, 2) int64 (row, col) of the skeleton pixels, (E, 2) int64 index pairs of joined pixels).

    Pixels of an (h, w) bool skeleton are joined to their 8 neighbours, but a diagonal step
    is left out where an L-shaped path through a shared neighbour exists, so a corner makes
    no triangle and every pixel of a thin line has two neighbours. Works on the pixel list
    (sorted linear indices), so a long diagonal line costs its pixels, not its bounding box.
    """
    rows, cols = np.nonzero(skeleton)
    pixels = np.stack([rows, cols], axis=1).astype(np.int64)
    stride = int(np.asarray(skeleton).shape[1]) + 2  # a padded row: no step wraps round a row end
    linear = (pixels[:, 0] + 1) * stride + pixels[:, 1] + 1
    right, below = _neighbour_index(linear, 1), _neighbour_index(linear, stride)
    pairs = []
    for dr, dc in _STEPS:
        there = _neighbour_index(linear, dr * stride + dc)
        joined = there >= 0
        if dr and dc:  # diagonal: only where no orthogonal neighbour links the two pixels
            beside = right if dc == 1 else _neighbour_index(linear, -1)
            joined &= (beside < 0) & (below < 0)
        here = np.flatnonzero(joined)
        pairs.append(np.stack([here, there[here]], axis=1))
    return pixels, np.concatenate(pairs).astype(np.int64)


def _touching_groups(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Returns the (N,) int64 group of each (N, 2) (row, col) pixel: pixels touching (diagonals too) share one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    stride = shape[1] + 2
    linear = (pixels[:, 0] + 1) * stride + pixels[:, 1] + 1
    order = np.argsort(linear)
    linear = linear[order]
    pairs = [np.stack([np.flatnonzero(there >= 0), there[there >= 0]], axis=1)
             for there in (_neighbour_index(linear, dr * stride + dc) for dr, dc in _STEPS)]
    edges = np.concatenate(pairs)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(linear), len(linear)))
    _, sorted_groups = connected_components(graph, directed=False)
    groups = np.empty(len(linear), dtype=np.int64)
    groups[order] = sorted_groups
    return groups


def skeleton_graph(skeleton: np.ndarray) -> SkeletonGraph:
    """Returns the branches and nodes of an (h, w) bool skeleton (see :class:`SkeletonGraph`)."""
    pixels, edges = skeleton_edges(skeleton)
    count = len(pixels)
    neighbours: list[list[int]] = [[] for _ in range(count)]
    for a, b in edges.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    is_node = np.array([len(n) != 2 for n in neighbours], dtype=bool)
    node = np.full(count, -1, dtype=np.int64)
    if is_node.any():  # node pixels touching, diagonals included, are one node (corners of a 2 x 2 block)
        shape = np.asarray(skeleton).shape
        node[is_node] = np.unique(_touching_groups(pixels[is_node], (shape[0], shape[1])), return_inverse=True)[1]
    visited: set[tuple[int, int]] = set()
    branches: list[list[int]] = []

    def walk(start: int, first: int) -> list[int]:
        path, previous, current = [start, first], start, first
        visited.add((min(start, first), max(start, first)))
        while node[current] < 0 and current != start:
            following = neighbours[current][0] if neighbours[current][0] != previous else neighbours[current][1]
            visited.add((min(current, following), max(current, following)))
            path.append(following)
            previous, current = current, following
        return path

    for start in np.flatnonzero(is_node).tolist():
        for neighbour in neighbours[start]:
            if (min(start, neighbour), max(start, neighbour)) in visited:
                continue
            if node[neighbour] == node[start]:  # inside one node
                visited.add((min(start, neighbour), max(start, neighbour)))
                continue
            branches.append(walk(start, neighbour))
    for a, b in edges.tolist():  # loops without a node
        if (min(a, b), max(a, b)) not in visited:
            branches.append(walk(a, b))
    return _join_through(SkeletonGraph(pixels, node, branches))


def _join_through(graph: SkeletonGraph) -> SkeletonGraph:
    """Returns the graph with the two branches at every node of degree 2 joined into one (the node's pixels inside it)."""
    node, branches = graph.node.copy(), dict(enumerate(graph.branches))
    ends: dict[int, list[int]] = {}
    for key, branch in branches.items():
        for pixel in (branch[0], branch[-1]):
            if node[pixel] >= 0:
                ends.setdefault(int(node[pixel]), []).append(key)
    for through, keys in ends.items():
        if len(keys) != 2 or keys[0] == keys[1]:
            continue
        first, second = branches.pop(keys[0]), branches.pop(keys[1])
        first = first if node[first[-1]] == through else first[::-1]
        second = second if node[second[0]] == through else second[::-1]
        joined = first + second
        branches[keys[0]] = joined
        far = int(node[second[-1]])
        if far >= 0:  # the second branch's other end now belongs to the joined one
            ends[far] = [keys[0] if k == keys[1] else k for k in ends[far]]
        node[graph.node == through] = -1
    return SkeletonGraph(graph.pixels, node, [branches[k] for k in sorted(branches)])


def path_length(points: np.ndarray) -> float:
    """Returns the length of an (N, 2) polyline."""
    return float(np.hypot(*np.diff(points, axis=0).T).sum()) if len(points) > 1 else 0.0


def _prunable(graph: SkeletonGraph, local_half_width: np.ndarray, spur_factor: float) -> list[list[int]]:
    """Returns the spurs and little loops of a skeleton graph, as the pixel indices to remove."""
    degree = graph.degrees()
    by_junction: dict[int, list[tuple[float, list[int], bool]]] = {}
    for branch in graph.branches:
        first, last = int(graph.node[branch[0]]), int(graph.node[branch[-1]])
        if first < 0 or degree[first] == 1 and degree[last] == 1:
            continue  # a loop without junction, or a lone line: nothing to prune
        length = path_length(graph.pixels[branch].astype(np.float64))
        for junction in {first, last} if first != last else {first}:
            if degree[junction] < 3 and first != last:
                continue
            row, col = graph.pixels[branch[0] if graph.node[branch[0]] == junction else branch[-1]]
            width = 2.0 * float(local_half_width[row, col])
            free = degree[first] == 1 or degree[last] == 1
            cut = (free and length < spur_factor * width) or (first == last and length < 2.0 * width)
            by_junction.setdefault(junction, []).append((length, branch, cut))
    removals = []
    for junction, incident in by_junction.items():
        cuts = [(length, branch) for length, branch, cut in incident if cut]
        if len(cuts) == len(incident) and sum(1 + (graph.node[b[0]] == graph.node[b[-1]]) for _, b in cuts) == degree[junction]:
            cuts = sorted(cuts, key=lambda item: item[0])[:-2]  # a small star: keep a line through it
        for _, branch in cuts:
            ends = {int(graph.node[branch[0]]), int(graph.node[branch[-1]])} - {junction}
            removals.append([i for i in branch if graph.node[i] < 0]
                            + [int(i) for end in ends for i in np.flatnonzero(graph.node == end)])
    return removals


def prune_spurs(skeleton: np.ndarray, local_half_width: np.ndarray, spur_factor: float = SPUR_FACTOR) -> np.ndarray:
    """Returns the (h, w) bool skeleton without spurs and little loops.

    A spur is an end branch shorter than ``spur_factor`` × the local width, twice
    ``local_half_width`` ((h, w) float) at its junction; a little loop returns to its
    junction within twice the width. Pruning repeats until none is left; where every
    branch at a junction is a spur, the two longest stay (a small blob keeps a line through it).
    """
    skeleton = np.asarray(skeleton, dtype=bool).copy()
    while True:
        graph = skeleton_graph(skeleton)
        removals = [i for pixels in _prunable(graph, local_half_width, spur_factor) for i in pixels]
        if not removals:
            return skeleton
        skeleton[graph.pixels[removals, 0], graph.pixels[removals, 1]] = False


def smooth_path(points: np.ndarray, sigma: float, closed: bool = False) -> np.ndarray:
    """Returns an (N, 2) polyline smoothed along its vertices (Gaussian, ``sigma`` vertices).

    An open path keeps its two ends: it is padded with its point reflection about each end,
    so a straight path stays straight and exactly as long. A closed path (first = last vertex) wraps.
    """
    from scipy.ndimage import gaussian_filter1d

    points = np.asarray(points, dtype=np.float64)
    if len(points) < 3 or sigma <= 0:
        return points
    if closed:
        ring = gaussian_filter1d(points[:-1], sigma, axis=0, mode="wrap")
        return np.vstack([ring, ring[:1]])
    pad = min(len(points) - 1, int(4 * sigma) + 1)
    head = 2 * points[0] - points[pad:0:-1]
    tail = 2 * points[-1] - points[-2 : -pad - 2 : -1]
    smoothed = gaussian_filter1d(np.vstack([head, points, tail]), sigma, axis=0, mode="nearest")[pad:-pad]
    smoothed[0], smoothed[-1] = points[0], points[-1]
    return smoothed


def extend_to_edge(points: np.ndarray, mask: np.ndarray, lookback: float, limit: float) -> np.ndarray:
    """Returns the (N, 2) polyline with a vertex added where it would leave the region past its last vertex.

    The direction is from the vertex ``lookback`` pixels back along the path to the last
    vertex; the end moves in quarter-pixel steps while it stays on a pixel of the (h, w)
    bool ``mask``, at most ``limit`` pixels.
    """
    if len(points) < 2:
        return points
    steps = np.hypot(*np.diff(points[::-1], axis=0).T).cumsum()
    back = points[::-1][min(int(np.searchsorted(steps, lookback)) + 1, len(points) - 1)]
    direction = points[-1] - back
    norm = float(np.hypot(*direction))
    if norm == 0:
        return points
    trail = points[-1] + np.arange(0.25, limit + 0.25, 0.25)[:, None] * (direction / norm)
    cols, rows = np.floor(trail[:, 0]).astype(np.int64), np.floor(trail[:, 1]).astype(np.int64)
    inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    inside[inside] = mask[rows[inside], cols[inside]]
    reach = int(np.argmin(inside)) if not inside.all() else len(inside)
    return np.vstack([points, trail[reach - 1]]) if reach else points


def trim_end(points: np.ndarray, length: float) -> np.ndarray:
    """Returns the (N, 2) polyline without its last ``length`` (at least its first segment's start and one more point)."""
    steps = np.hypot(*np.diff(points[::-1], axis=0).T)
    behind = np.concatenate([[0.0], steps.cumsum()])  # distance of each vertex from the end, walking back
    keep = int(np.searchsorted(behind, length))  # vertices from the end closer than ``length`` are dropped
    if keep >= len(points) - 1:
        keep = len(points) - 2
    if keep <= 0:
        return points
    cut = points[::-1][keep - 1] + (points[::-1][keep] - points[::-1][keep - 1]) * (
        (length - behind[keep - 1]) / max(steps[keep - 1], 1e-12))
    return np.vstack([points[: len(points) - keep], cut]) if length < behind[keep] else points[: len(points) - keep]


def fill_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Returns the (h, w) bool mask with its holes smaller than ``max_area`` pixels filled (``mask`` itself when it has none).

    A hole is a 4-connected piece of background that does not reach the mask's border.
    """
    from scipy import ndimage

    background, count = ndimage.label(~mask)
    if count <= 1:
        return mask
    outside = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    fill = np.bincount(background.ravel(), minlength=count + 1) < max_area
    fill[outside] = False
    fill[0] = False
    return mask | fill[background] if fill.any() else mask


def centre_line_skeleton(mask: np.ndarray, spur_factor: float = SPUR_FACTOR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (pruned (h, w) bool skeleton, the mask with small holes filled, (h, w) float local half-width)
    of one (h, w) bool region (steps 1 and 2 of the module docstring).

    The local half-width of a pixel is the largest distance to the edge within the region's
    largest half-width around it: a spur's junction near the edge is measured against the
    width of the region there, not against the distance to that edge.
    """
    from scipy import ndimage
    from skimage.morphology import skeletonize

    half_width = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    widest = float(half_width.max())
    mask = fill_holes(mask, (4.0 * widest) ** 2)
    reach = max(1, int(np.ceil(widest)))
    local = ndimage.maximum_filter(half_width, size=2 * reach + 1, mode="constant")
    outline = mask
    if widest * EDGE_SMOOTHING >= 0.7:  # blur the edge's pixel noise away before thinning (fewer spurs)
        blurred = fill_holes(mask & (box_blur(mask, widest * EDGE_SMOOTHING) > 0.5), (4.0 * widest) ** 2)
        if ndimage.label(blurred, structure=np.ones((3, 3), dtype=bool))[1] == 1:  # unless it cuts a thin neck
            outline = blurred
    skeleton = np.asarray(skeletonize(outline), dtype=np.bool_)  # type: ignore[no-untyped-call]  # scikit-image has no annotations
    return prune_spurs(skeleton, local, spur_factor), mask, local


def box_blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Returns the (h, w) float32 mean of an (h, w) bool mask under two passes of a box filter as wide as a Gaussian of ``sigma``."""
    from scipy import ndimage

    size = max(1, int(round(np.sqrt(6.0 * sigma * sigma + 1.0))))
    once = ndimage.uniform_filter(mask.astype(np.float32), size, mode="constant")
    return ndimage.uniform_filter(once, size, mode="constant")


def longest_route(graph: SkeletonGraph) -> list[int]:
    """Returns the indices of the branches on the longest route through a skeleton graph, end to end.

    The route between the two nodes furthest apart along the skeleton (two sweeps of
    shortest paths: exact for a tree, which a pruned skeleton of a region without large
    holes is). A graph that is one loop without nodes is its own route.
    """
    from scipy.sparse import coo_matrix

    lengths = [path_length(graph.pixels[b].astype(np.float64)) for b in graph.branches]
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for index, branch in enumerate(graph.branches):
        first, last = int(graph.node[branch[0]]), int(graph.node[branch[-1]])
        if first < 0 or first == last:
            continue  # a loop
        key = (min(first, last), max(first, last))
        if key not in best or lengths[index] < best[key][0]:
            best[key] = (lengths[index], index)
    if not best:
        return [int(np.argmax(lengths))]
    count = int(graph.node.max()) + 1
    pairs = np.array(list(best), dtype=np.int64)
    weights = np.array([length for length, _ in best.values()]) + 1e-9
    network = coo_matrix((weights, (pairs[:, 0], pairs[:, 1])), shape=(count, count)).tocsr()
    start, _ = _farthest(network, int(pairs[0, 0]))
    node, previous = _farthest(network, start)
    route = []
    while previous[node] >= 0:
        route.append(best[(min(node, int(previous[node])), max(node, int(previous[node])))][1])
        node = int(previous[node])
    return route[::-1]


def _farthest(network: object, start: int) -> tuple[int, np.ndarray]:
    """Returns (the node furthest from ``start`` along a weighted graph, (nodes,) predecessors towards ``start``)."""
    from scipy.sparse.csgraph import dijkstra

    distances, previous = dijkstra(network, directed=False, indices=start, return_predecessors=True)  # type: ignore[call-overload]
    reachable = np.where(np.isinf(distances), -1.0, distances)
    return int(np.argmax(reachable)), np.asarray(previous)


def centre_line_paths(mask: np.ndarray, spur_factor: float = SPUR_FACTOR, branching: bool = True) -> list[np.ndarray]:
    """Returns the centre-line of one (h, w) bool region as (N, 2) float64 (x, y) polylines.

    A dash or a line is one polyline from end to end; a forked region (a crack sealing with a
    branch longer than it is wide) has one polyline per branch, meeting at the fork; a ring
    is one closed polyline. With ``branching`` False a region is one line: the longest route
    through its skeleton (:func:`longest_route`; a lane marking whose worn end splits in two
    prongs is measured once). See the module docstring for the steps. An empty mask gives none.
    """
    import shapely

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    skeleton, mask, local = centre_line_skeleton(mask, spur_factor)
    graph = skeleton_graph(skeleton)
    if not graph.branches:  # a region a pixel or two across: a line along its long axis
        return _dot_line(mask, graph.pixels[0]) if len(graph.pixels) else []
    if not branching and len(graph.branches) > 1:
        graph = SkeletonGraph(graph.pixels, graph.node, [graph.branches[i] for i in longest_route(graph)])
    degree = graph.degrees()
    junctions = {n: tuple(graph.centroid(n)) for n in np.flatnonzero(degree >= 2).tolist()}
    lines = []
    for branch in graph.branches:
        points = graph.pixels[branch][:, ::-1] + 0.5
        first, last = int(graph.node[branch[0]]), int(graph.node[branch[-1]])
        if first in junctions:
            points = np.vstack([junctions[first], points])
        if last in junctions:
            points = np.vstack([points, junctions[last]])
        lines.append(points)
    merged = shapely.line_merge(shapely.MultiLineString(lines))
    forks = {point for n, point in junctions.items() if degree[n] >= 3}
    paths = []
    for line in getattr(merged, "geoms", [merged]):
        points = np.asarray(line.coords)
        on_line = local[np.floor(points[:, 1]).astype(np.int64), np.floor(points[:, 0]).astype(np.int64)]
        closed = line.is_closed and len(points) > 3
        points = smooth_path(points, max(MIN_SMOOTHING_PX, float(np.median(on_line))), closed)
        if not closed:
            for flip in (False, True):
                points = points[::-1] if flip else points
                if tuple(points[-1]) not in forks:  # a free end: thinning bends its last half-width (to a corner)
                    width = 2.0 * float(on_line[0 if flip else -1])
                    points = trim_end(points, width / 2.0)
                    points = extend_to_edge(points, mask, lookback=max(width, 4.0), limit=2.0 * width + 2.0)
                points = points[::-1] if flip else points
        paths.append(points)
    return paths


def _dot_line(mask: np.ndarray, pixel: np.ndarray) -> list[np.ndarray]:
    """Returns the centre-line of a region whose skeleton is one pixel: a line through it along the region's long axis."""
    rows, cols = np.nonzero(mask)
    coords = np.stack([cols + 0.5, rows + 0.5], axis=1)
    _, vectors = np.linalg.eigh(np.cov(coords.T) if len(coords) > 2 else np.eye(2))
    direction = vectors[:, -1]
    start = pixel[::-1] + 0.5
    ends = [extend_to_edge(np.vstack([start - 0.01 * sign * direction, start]), mask, 0.0, float(max(mask.shape)))[-1]
            for sign in (1.0, -1.0)]
    line = np.vstack(ends)
    return [line] if path_length(line) > 0 else []


def mean_width(area: float, length: float) -> float:
    """Returns a region's mean width: its area over its centre-line length (0 for no length)."""
    return area / length if length > 0 else 0.0
