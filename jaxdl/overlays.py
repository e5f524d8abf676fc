"""Pictures of predictions: a class mask blended over its image, or boxes drawn with their labels and scores.

Both take and return plain uint8 RGB arrays, so `jaxdl predict` writes them as PNGs and notebooks show them.
Small images are enlarged (nearest neighbour, whole pixels) first, so labels stay legible on a 64x64 scene.
"""

from __future__ import annotations

import numpy as np

# Distinct colours (Okabe-Ito, then tab10's); class 0 of a mask is background and stays uncoloured.
PALETTE = np.array(
    [
        (230, 159, 0),
        (86, 180, 233),
        (0, 158, 115),
        (240, 228, 66),
        (0, 114, 178),
        (213, 94, 0),
        (204, 121, 167),
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
    ],
    np.uint8,
)
MIN_SIDE = 256


def colour(index: int) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in PALETTE[index % len(PALETTE)])
    return r, g, b


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W] or [H, W, 1|3] -> uint8 [H, W, 3]."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def _enlarge(image: np.ndarray) -> tuple[np.ndarray, int]:
    factor = max(1, int(np.ceil(MIN_SIDE / min(image.shape[:2]))))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1), factor


def mask_overlay(
    image: np.ndarray, class_map: np.ndarray, *, alpha: float = 0.7, background: int = 0, enlarge: bool = True
) -> np.ndarray:
    """The image with each non-background pixel tinted by its class colour (class c uses colour c - 1, so the
    first object class gets the first colour)."""
    image, class_map = as_rgb(image).astype(np.float32), np.asarray(class_map)
    tint = PALETTE[(class_map - 1) % len(PALETTE)].astype(np.float32)
    coloured = (class_map != background)[..., None]
    out = np.where(coloured, (1 - alpha) * image + alpha * tint, image).round().astype(np.uint8)
    return _enlarge(out)[0] if enlarge else out


def draw_boxes(
    image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, class_names, scores=None, *, min_score: float = 0.0
) -> np.ndarray:
    """Boxes (normalised ymin, xmin, ymax, xmax) outlined in their class colour and labelled 'name 0.93'; boxes
    scoring under `min_score` are left out."""
    from PIL import Image, ImageDraw

    enlarged, _ = _enlarge(as_rgb(image))
    canvas = Image.fromarray(enlarged)
    draw = ImageDraw.Draw(canvas)
    height, width = enlarged.shape[:2]
    show_scores = scores is not None  # ground truth has none
    scores = np.asarray(scores) if show_scores else np.ones(len(boxes))
    for box, cls, score in zip(np.asarray(boxes), np.asarray(classes), scores):
        if score < min_score:
            continue
        ymin, xmin, ymax, xmax = box * np.array([height, width, height, width])
        c = colour(int(cls))
        draw.rectangle((xmin, ymin, xmax, ymax), outline=c, width=2)
        label = f'{class_names[int(cls)]} {score:.2f}' if show_scores else class_names[int(cls)]
        left, top, right, bottom = draw.textbbox((xmin + 2, ymin + 1), label)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=c)
        draw.text((xmin + 2, ymin + 1), label, fill=(0, 0, 0))
    return np.asarray(canvas)
