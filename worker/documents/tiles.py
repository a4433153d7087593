"""Tiles for pages too large for the pixel cap, so they are read at the job's DPI, not shrunk.

A 200-inch banner shrunk to fit 40 Mpx comes out at about 31 dpi, where no engine finds text.
Read in overlapping tiles at the job's DPI instead, each cell is kept by the tile whose centre
is nearest to the cell's (so text in an overlap is read once), and the cells are placed with
their tile's offset on the whole page.
"""

from __future__ import annotations

import math

Box = tuple[int, int, int, int]

MAX_TILES = 24
"""Beyond this many tiles (a 100-inch square at 200 dpi) the page is read at a lower DPI instead."""
OVERLAP_INCHES = 0.5
"""Enough for a line of body text cut by one tile's edge to lie whole in its neighbour."""


def plan_tiles(width: int, height: int, max_pixels: int, overlap: int) -> list[Box]:
    """Overlapping tiles of at most ``max_pixels`` covering a ``width`` x ``height`` page, row by row."""
    if width * height <= max_pixels:
        return [(0, 0, width, height)]
    side = math.isqrt(max_pixels)
    tile_height = min(height, side)
    tile_width = min(width, max_pixels // tile_height)
    xs = _starts(width, tile_width, overlap)
    ys = _starts(height, tile_height, overlap)
    return [(x, y, x + tile_width, y + tile_height) for y in ys for x in xs]


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / max(1, tile - overlap))
    count = max(count, 2)
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def owning_tile(box: Box, tiles: list[Box]) -> int:
    """The index of the tile whose centre is nearest to ``box``'s centre."""
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return min(range(len(tiles)), key=lambda i: _distance_to_centre(tiles[i], x, y))


def _distance_to_centre(tile: Box, x: float, y: float) -> float:
    return ((tile[0] + tile[2]) / 2 - x) ** 2 + ((tile[1] + tile[3]) / 2 - y) ** 2
