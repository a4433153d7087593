"""Tiles for pages too large for the pixel cap, so they are read at the job's DPI, not shrunk.

A 200-inch banner shrunk to fit 40 Mpx comes out at about 31 dpi, where no engine finds text.
Read in overlapping tiles at the job's DPI instead. Tiles are full-width bands when the cap
allows a band tall enough, since text lines run across and a band's edge then never cuts a line
lengthwise; only pages too wide for that fall back to a grid. Each line is kept by the tile whose
centre is nearest to the line's (so a line read twice in an overlap is kept once, and a line cut by
a tile's edge is left to the neighbour that holds it whole), and cells are placed with their
tile's offset on the whole page.
"""

from __future__ import annotations

import math

Box = tuple[int, int, int, int]

MAX_TILES = 24
"""Beyond this many tiles (a 100-inch square at 200 dpi) the page is read at a lower DPI instead."""
OVERLAP_INCHES = 0.5
"""Enough for a line of body text cut by one tile's edge to lie whole in its neighbour."""
MIN_BAND_OVERLAPS = 2
"""A band at least two overlaps tall (an inch at 0.5 inch overlap) holds a line plus what it shares."""
OVERLAP_SHARE = 4
"""Tiles overlap by at least a quarter of their height, whatever the dpi said about line height."""


def plan_tiles(width: int, height: int, max_pixels: int, overlap: int) -> list[Box]:
    """Overlapping tiles of at most ``max_pixels`` covering a ``width`` x ``height`` page, row by row.

    ``overlap`` is the least overlap in pixels (half an inch at the page's dpi): full-width bands
    when one of ``max_pixels`` is ``MIN_BAND_OVERLAPS`` overlaps tall, a grid otherwise.
    """
    if width * height <= max_pixels:
        return [(0, 0, width, height)]
    band = max_pixels // width
    if band >= MIN_BAND_OVERLAPS * overlap:
        return [(0, y, width, y + band) for y in _starts(height, band, line_overlap(band, overlap))]
    return _grid(width, height, max_pixels, overlap)


def line_overlap(tile_height: int, overlap: int) -> int:
    """The vertical overlap: enough to hold a whole line even when the dpi, and so ``overlap``, is wrong."""
    return max(overlap, tile_height // OVERLAP_SHARE)


def _grid(width: int, height: int, max_pixels: int, overlap: int) -> list[Box]:
    """Near-square tiles for a page too wide for bands (a banner), the last resort.

    A line crossing a tile's side edge is read in two parts, the overlap in both; bands avoid
    that, so the grid is only for a page whose band of the cap's pixels could not hold a line.
    """
    side = math.isqrt(max_pixels)
    tile_height = min(height, side)
    tile_width = min(width, max_pixels // tile_height)
    xs = _starts(width, tile_width, overlap)
    ys = _starts(height, tile_height, line_overlap(tile_height, overlap))
    return [(x, y, x + tile_width, y + tile_height) for y in ys for x in xs]


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread starts, so every overlap is at least ``overlap`` and all are alike."""
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / max(1, tile - overlap))
    count = max(count, 2)
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def owning_tile(box: Box, tiles: list[Box]) -> int:
    """The index of the tile whose centre is nearest to ``box``'s centre (a line's, or a cell's)."""
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return min(range(len(tiles)), key=lambda i: _distance_to_centre(tiles[i], x, y))


def _distance_to_centre(tile: Box, x: float, y: float) -> float:
    return ((tile[0] + tile[2]) / 2 - x) ** 2 + ((tile[1] + tile[3]) / 2 - y) ** 2
