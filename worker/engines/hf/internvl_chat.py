"""InternVL2 (``InternVLChatModel``, remote code): 448-px dynamic tiles and the model's ``batch_chat``.

The remote checkpoints ship no image processor: the model card's own preprocessing cuts the page
into up to ``max_tiles`` 448-px tiles on the grid closest to its aspect ratio, adds a thumbnail of
the whole page, and normalises with ImageNet statistics. That is rebuilt here (PIL and numpy, so it
is tested without weights); the converted ``-hf`` checkpoints do the same inside transformers and use
the chat recipe instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ocrq.worker.engines.hf.answers import PageJob, RawAnswer, count_tokens, finish_reason, sampling_kwargs

if TYPE_CHECKING:
    from ocrq.worker.engines.hf.loading import LoadedModel

TILE = 448
MAX_TILES = 12
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_TOKEN = "<image>"


def tile_grid(size: tuple[int, int], max_tiles: int = MAX_TILES, tile: int = TILE) -> tuple[int, int]:
    """(columns, rows) whose aspect ratio is closest to the page's; on a tie the larger grid wins
    when the page has the pixels to fill it (the model card's rule)."""
    width, height = size
    aspect = width / height
    grids = sorted(
        {(c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1) if c * r <= max_tiles},
        key=lambda grid: grid[0] * grid[1],
    )
    best, best_diff = (1, 1), float("inf")
    for columns, rows in grids:
        diff = abs(aspect - columns / rows)
        if diff < best_diff:
            best, best_diff = (columns, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * columns * rows:
            best = (columns, rows)
    return best


def page_tiles(image: Image.Image, max_tiles: int = MAX_TILES, tile: int = TILE) -> list[Image.Image]:
    """The page resized onto its grid and cut into tiles, plus a thumbnail when there is more than one."""
    columns, rows = tile_grid(image.size, max_tiles, tile)
    resized = image.convert("RGB").resize((columns * tile, rows * tile), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile))
        for r in range(rows)
        for c in range(columns)
    ]
    if len(tiles) > 1:
        tiles.append(image.convert("RGB").resize((tile, tile), Image.Resampling.BICUBIC))
    return tiles


def normalised(tiles: list[Image.Image]) -> np.ndarray:
    """(tiles, 3, H, W) float32, ImageNet-normalised, as the model's vision tower was trained."""
    array = np.stack([np.asarray(t, dtype=np.float32) / 255.0 for t in tiles])
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return array.transpose(0, 3, 1, 2).copy()


def internvl_prompt(prompt: str) -> str:
    return prompt if IMAGE_TOKEN in prompt else f"{IMAGE_TOKEN}\n{prompt}"


def internvl_answer(loaded: LoadedModel, jobs: list[PageJob]) -> list[RawAnswer]:
    """One ``batch_chat`` for pages of one sampling (the generation config is per call)."""
    import torch

    per_page = [page_tiles(job.image) for job in jobs]
    pixels = torch.from_numpy(normalised([t for tiles in per_page for t in tiles]))
    pixels = pixels.to(device=loaded.device, dtype=getattr(torch, loaded.dtype))
    limit = max(job.max_new_tokens for job in jobs)
    config: dict[str, Any] = {"max_new_tokens": limit, **sampling_kwargs(*jobs[0].sampling)}
    with torch.inference_mode():
        replies = loaded.model.batch_chat(
            loaded.processor, pixels, num_patches_list=[len(tiles) for tiles in per_page],
            questions=[internvl_prompt(job.prompt) for job in jobs], generation_config=config,
        )  # fmt: skip
    return [_answer(loaded, text, job) for text, job in zip(replies, jobs, strict=True)]


def _answer(loaded: LoadedModel, text: str, job: PageJob) -> RawAnswer:
    tokens = count_tokens(loaded.processor, text)
    return RawAnswer(text, finish_reason(tokens, job.max_new_tokens), None, tokens)
