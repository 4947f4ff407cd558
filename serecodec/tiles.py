"""Cutting images of any size into tiles of the learned model's input size (raster order per
image, edge tiles padded with 0 and masked, so that only real pixels are coded), and back.
Used by bits-back coding and by training on a user's images alike."""
from __future__ import annotations

from typing import Optional

import numpy as np


def to_tiles(images, tile: tuple) -> tuple:
    """Cut images into tiles of ``tile`` (raster order per image, images in order), padding edge
    tiles with 0. Returns (tiles (T, th·tw) in the images' dtype, masks (T, th·tw) bool of real pixels, or None
    when no tile is padded)."""
    th, tw = tile
    if isinstance(images, np.ndarray) and images.shape[1:] == (th, tw):   # every image is one tile
        return images.reshape(len(images), th * tw), None
    tiles, masks, padded = [], [], False
    for image in images:
        height, width = image.shape
        rows, cols = -(-height // th), -(-width // tw)
        if (height, width) == (th, tw):
            tiles.append(np.asarray(image).reshape(1, -1))
            masks.append(np.ones((1, th * tw), bool))
            continue
        canvas = np.zeros((rows * th, cols * tw), np.asarray(image).dtype)
        canvas[:height, :width] = image
        real = np.zeros_like(canvas, dtype=bool)
        real[:height, :width] = True
        padded |= (rows * th, cols * tw) != (height, width)
        tiles.append(canvas.reshape(rows, th, cols, tw).transpose(0, 2, 1, 3).reshape(-1, th * tw))
        masks.append(real.reshape(rows, th, cols, tw).transpose(0, 2, 1, 3).reshape(-1, th * tw))
    if not tiles:
        return np.zeros((0, th * tw), np.uint8), None      # (the dtype of the images is kept otherwise)
    return np.concatenate(tiles), (np.concatenate(masks) if padded else None)


def tile_masks(shapes, tile: tuple) -> Optional[np.ndarray]:
    """The masks ``to_tiles`` gives for images of these shapes (the decoder knows only the shapes)."""
    th, tw = tile
    if all(h % th == 0 and w % tw == 0 for h, w in shapes):
        return None
    return to_tiles([np.ones(shape, np.uint8) for shape in shapes], tile)[1]


def tile_count(shapes, tile: tuple) -> int:
    th, tw = tile
    return sum(-(-h // th) * -(-w // tw) for h, w in shapes)


def from_tiles(tiles: np.ndarray, shapes, tile: tuple) -> list:
    """Reassemble images of ``shapes`` from their tiles (the inverse of ``to_tiles``)."""
    th, tw = tile
    if shapes and all(shape == (th, tw) for shape in shapes):      # every image is one tile: views
        return list(tiles.reshape(len(shapes), th, tw))
    out, start = [], 0
    for height, width in shapes:
        rows, cols = -(-height // th), -(-width // tw)
        block = tiles[start:start + rows * cols].reshape(rows, cols, th, tw).transpose(0, 2, 1, 3)
        out.append(np.ascontiguousarray(block.reshape(rows * th, cols * tw)[:height, :width]))
        start += rows * cols
    return out
