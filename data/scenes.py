"""Seeded scenes of moving, named, coloured objects, rendered to uint8 frames.

A scene is a few objects with a distinct colour and a distinct shape each ("red ball",
"blue cube"), each visible during one time window and moving in a straight line. Ground
truth comes from the geometry, not from the encoded pixels: an object's box at frame k is
the tight pixel box of its drawn mask, so boxes stay exact after lossy H.264 encoding.
"""
from __future__ import annotations

import dataclasses

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 225),
    "yellow": (235, 210, 40),
    "purple": (145, 50, 185),
    "orange": (245, 135, 20),
    "white": (240, 240, 240),
    "cyan": (40, 205, 215),
}
SHAPES: tuple[str, ...] = ("ball", "cube", "triangle", "diamond")
BACKGROUND = (60, 64, 72)


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One object: name "<colour> <shape>", half-size in px, path and visible frames."""

    colour: str
    shape: str
    radius: int
    start_xy: tuple[float, float]
    end_xy: tuple[float, float]
    first_frame: int  # first visible frame (inclusive)
    last_frame: int  # last visible frame (inclusive)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def visible(self, k: int) -> bool:
        return self.first_frame <= k <= self.last_frame

    def centre(self, k: int) -> tuple[float, float]:
        """Linear motion over the visible window (frame k clamped into it)."""
        span = max(self.last_frame - self.first_frame, 1)
        a = min(max((k - self.first_frame) / span, 0.0), 1.0)
        return (self.start_xy[0] + a * (self.end_xy[0] - self.start_xy[0]),
                self.start_xy[1] + a * (self.end_xy[1] - self.start_xy[1]))


@dataclasses.dataclass(frozen=True)
class Scene:
    width: int
    height: int
    fps: float
    num_frames: int
    objects: tuple[SceneObject, ...]

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def time(self, k: int) -> float:
        return round(k / self.fps, 3)


# colours a small, compressed frame confuses: a harder scene pairs its objects' colours so
CONFUSABLE = (("red", "orange"), ("blue", "purple"), ("green", "cyan"), ("yellow", "white"))
# difficulty -> (objects min, max; clip seconds x; radius x; paths cross the centre)
DIFFICULTY = {0: (2, 3, 1.0, 1.0, False), 1: (3, 4, 1.5, 0.85, True), 2: (4, 4, 2.0, 0.7, True)}


def _confusable_colours(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct colours made of whole confusable pairs (an odd n: one colour alone)."""
    pairs = [CONFUSABLE[i] for i in rng.permutation(len(CONFUSABLE))]
    out = [c for p in pairs[: (n + 1) // 2] for c in (p if rng.random() < 0.5 else p[::-1])]
    return out[:n]


def sample_scene(rng: np.random.Generator, *, width: int, height: int, fps: float,
                 min_seconds: float, max_seconds: float, min_objects: int = 2,
                 max_objects: int = 3, difficulty: int = 0) -> Scene:
    """Draws a scene; objects get distinct colours, distinct shapes and distinct entry frames.

    Entry frames differ by at least half a second so "which appears first" has one answer,
    and every object stays visible for at least a second so it is sampled at 2 fps.
    `difficulty` 1 and 2 (0 draws exactly what it always drew): more objects, colours in
    confusable pairs (red/orange, blue/purple, ...), longer clips (the sampled frames lie
    further apart), smaller objects, and paths through the centre, so objects occlude
    each other (boxes stay each object's full extent).
    """
    if difficulty not in DIFFICULTY:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTY)}, got {difficulty!r}")
    lo_n, hi_n, stretch, shrink, cross = DIFFICULTY[difficulty]
    if difficulty:
        min_objects, max_objects = lo_n, hi_n
        min_seconds, max_seconds = min_seconds * stretch, max_seconds * stretch
    num_frames = int(round(rng.uniform(min_seconds, max_seconds) * fps))
    n_obj = int(rng.integers(min_objects, max_objects + 1))
    colours = (rng.choice(sorted(COLOURS), size=n_obj, replace=False) if not difficulty
               else np.asarray(_confusable_colours(rng, n_obj)))
    shapes = rng.choice(SHAPES, size=n_obj, replace=False)
    gap = max(int(round(0.5 * fps)), 1)
    min_len = int(round(1.0 * fps))
    # Entry frames: a sorted draw from the first 40% of the clip with a minimum gap.
    slots = np.arange(0, max(int(0.4 * num_frames), gap * n_obj + 1), gap)
    entries = np.sort(rng.choice(slots, size=n_obj, replace=False))
    order = rng.permutation(n_obj)  # which object enters first is random
    objects = []
    for j, i in enumerate(order):
        first = int(entries[j])
        last = int(rng.integers(min(first + min_len, num_frames - 1), num_frames))
        radius = int(rng.integers(max(height // 12, 6), max(height // 7, 8) + 1))
        if difficulty:
            radius = max(int(radius * shrink), 5)
        lo = np.array([radius + 1, radius + 1], float)
        hi = np.array([width - radius - 2, height - radius - 2], float)
        start = rng.uniform(lo, hi)
        end = rng.uniform(lo, hi)
        if cross:  # through the centre: the objects' paths meet there, and the later drawn hides
            centre = np.array([width / 2, height / 2])
            end = np.clip(2 * centre - start + rng.uniform(-radius, radius, 2), lo, hi)
        # Make the horizontal motion clear enough to describe in words.
        if abs(end[0] - start[0]) < width / 4:
            end[0] = hi[0] if start[0] < width / 2 else lo[0]
        objects.append(SceneObject(str(colours[i]), str(shapes[i]), radius,
                                   (float(start[0]), float(start[1])),
                                   (float(end[0]), float(end[1])), first, last))
    return Scene(width, height, float(fps), num_frames, tuple(objects))


def object_mask(obj: SceneObject, k: int, height: int, width: int) -> np.ndarray:
    """Boolean [H, W] mask of the object at frame k (empty when it is not visible)."""
    if not obj.visible(k):
        return np.zeros((height, width), bool)
    cx, cy = obj.centre(k)
    r = obj.radius
    yy, xx = np.mgrid[0:height, 0:width]
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    if obj.shape == "ball":
        return dx * dx + dy * dy <= r * r
    if obj.shape == "cube":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if obj.shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if obj.shape == "triangle":  # apex up, base at cy + r
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
    raise ValueError(f"unknown shape {obj.shape!r}")


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight pixel box [x1, y1, x2, y2) of a mask (x2, y2 exclusive), None when empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render(scene: Scene) -> tuple[np.ndarray, list[dict[str, tuple[int, int, int, int]]]]:
    """Frames [T, H, W, 3] uint8 and, per frame, {object name: pixel box} of visible objects.

    Objects are drawn in list order (later ones on top); boxes are each object's full
    extent, occluded or not, because the question is where the object is.
    """
    h, w = scene.height, scene.width
    frames = np.empty((scene.num_frames, h, w, 3), np.uint8)
    # A faint vertical gradient gives the encoder something besides flat colour.
    grad = np.linspace(-12, 12, h)[:, None, None]
    base = np.clip(np.array(BACKGROUND, float)[None, None, :] + grad, 0, 255)
    base = np.broadcast_to(base, (h, w, 3)).astype(np.uint8)
    boxes: list[dict[str, tuple[int, int, int, int]]] = []
    for k in range(scene.num_frames):
        frame = base.copy()
        per_frame = {}
        for obj in scene.objects:
            m = object_mask(obj, k, h, w)
            box = mask_box(m)
            if box is None:
                continue
            frame[m] = COLOURS[obj.colour]
            per_frame[obj.name] = box
        frames[k] = frame
        boxes.append(per_frame)
    return frames, boxes
