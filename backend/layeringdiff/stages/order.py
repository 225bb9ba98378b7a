"""Which object is in front, from a label map alone (`split --labels --order auto`).

Where two objects touch, the one in front keeps its own outline and the one behind is cut by it: a bite is taken
out of the back object, which its convex hull fills again, reaching into the front object, while the front
object's hull hardly reaches into the back one. So for each touching pair, each object's hull depth (how far
inside its convex hull a pixel is) is summed over the other's region: the object whose hull reaches less into the
other is in front. A pair where neither reaches (a straight cut leaves both convex) stays undecided. The order
is the one that agrees with the most verdicts, each weighed by the pair's shared boundary (every order is tried
up to 8 objects, beyond by wins); objects without a verdict go behind.

Measured (2 cores, 2026-12-05): on bench_layers' scenes of 3 to 5 furry objects from photos and paintings, 54 of 55
touching pairs in the right order over three seeds (96-100%); on bench_order's random geometric shapes (ellipses,
star-like blobs, rectangles, whose straight cuts leave some pairs undecided) 83-88%, under the issue's 90%.
Without the opening of the body the geometric shapes reached 86-92% and the furry scenes 46-54%.
"""

import itertools

import cv2
import numpy as np

MIN_SHARED = 8  # boundary pixels on each side: fewer and the pair is not taken as touching
OPENING = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))  # strands thinner than this leave the body


def shared_boundaries(labels: np.ndarray, values: list[int]) -> dict[tuple[int, int], np.ndarray]:
    """(a, b) -> the pixels on either side of their shared boundary (4-neighbours across it), for every touching
    pair in the order of `values`: both sides, so neither object is favoured."""
    out = {}
    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    regions = {k: labels == k for k in values}
    grown = {k: cv2.dilate(region.astype(np.uint8), kernel) > 0 for k, region in regions.items()}
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            touch = (grown[a] & regions[b]) | (grown[b] & regions[a])
            if np.count_nonzero(touch) >= 2 * MIN_SHARED:
                out[(a, b)] = touch
    return out


def hull_depth(region: np.ndarray) -> np.ndarray:
    """For every pixel, how far inside the convex hull of the region's body it is (0 outside the hull). The body:
    the region opened by a small disk, so hair-like strands (which a label of a furry object holds) do not
    stretch the hull into every neighbour."""
    body = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_OPEN, OPENING)
    points = cv2.findNonZero(body if body.any() else region.astype(np.uint8))
    hull = np.zeros(region.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
    if hull.all():  # a hull over the whole picture has no outside to measure from: the picture's edge is it
        return cv2.distanceTransform(np.pad(hull, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    return cv2.distanceTransform(hull, cv2.DIST_L2, 5)


def front_of(depth_a: np.ndarray, depth_b: np.ndarray, region_a: np.ndarray, region_b: np.ndarray) -> float:
    """Positive when a is in front of b, negative when behind, 0 when undecided. b's hull reaching into a (the
    bite a took out of b) against a's hull reaching into b, in pixels of depth summed over the other's region."""
    return float(depth_b[region_a].sum() - depth_a[region_b].sum())


EXHAUSTIVE = 8  # up to this many touching objects every order is tried (8! = 40,320); beyond, by wins


def occlusion_verdicts(labels: np.ndarray, values: list[int]) -> dict[tuple[int, int], float]:
    """(a, b) -> positive when a is in front of b, negative when behind, for each touching pair with a verdict;
    its size the pair's shared boundary's length."""
    pairs = shared_boundaries(labels, values)
    regions = {k: labels == k for k in values}
    depth = {k: hull_depth(regions[k]) for k in {k for pair in pairs for k in pair}}
    verdicts = {}
    for (a, b), boundary in pairs.items():
        verdict = front_of(depth[a], depth[b], regions[a], regions[b])
        if verdict:
            verdicts[(a, b)] = float(np.sign(verdict) * np.count_nonzero(boundary))
    return verdicts


def occlusion_order(labels: np.ndarray, values: list[int]) -> list[int]:
    """The label values front first: the order that agrees with the most pairs' verdicts (each touching pair's
    weight its shared boundary's length), ties and untouched objects the smaller first."""
    return best_order(labels, values, occlusion_verdicts(labels, values))


def best_order(labels: np.ndarray, values: list[int], verdicts: dict[tuple[int, int], float]) -> list[int]:
    """The order that agrees with the most weight of `verdicts`; objects in none of them behind, the smaller first."""
    area = {k: int(np.count_nonzero(labels == k)) for k in values}
    by_size = sorted(values, key=lambda k: area[k])
    involved = [k for k in by_size if any(k in pair for pair in verdicts)]
    if len(involved) <= EXHAUSTIVE:
        best = max(itertools.permutations(involved), key=lambda order: _agreement(order, verdicts))
    else:  # by wins: how much boundary each object is in front of, less how much it is behind
        wins = dict.fromkeys(involved, 0.0)
        for (a, b), weight in verdicts.items():
            wins[a] += weight
            wins[b] -= weight
        best = tuple(sorted(involved, key=lambda k: -wins[k]))
    # an object with no verdict (touching nothing, or only straight boundaries) goes behind, the smaller first
    return [*best, *(k for k in by_size if k not in best)]


def _agreement(order: tuple[int, ...], verdicts: dict[tuple[int, int], float]) -> float:
    rank = {k: i for i, k in enumerate(order)}
    return sum(weight if rank[a] < rank[b] else -weight for (a, b), weight in verdicts.items())
