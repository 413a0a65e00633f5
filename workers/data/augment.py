"""Batches and augmentation on the data's own device (airbench style): the dataset lives on the GPU as uint8 and
each batch is gathered, augmented and converted there, vectorised, with no per-sample Python.

Augmentation: zero pad `pad` px on every side, random HxW crop back to the input size, random horizontal flip
(off for SVHN: pass `flip=DataSplits.hflip`). Random draws come from `generator` (on its own device; moved to the
data's device when they differ), so a seeded generator gives the same batches and crops on every run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

PAD = 4  # px of zero padding per side before the random crop


def _device_of(generator: torch.Generator | None, x: Tensor) -> torch.device:
    return generator.device if generator is not None else x.device


def augment_batch(x: Tensor, generator: torch.Generator | None = None, *, pad: int = PAD, flip: bool = True) -> Tensor:
    """Random pad-crop (and flip) of a batch (B, C, H, W) of any dtype -> (B, C, H, W), same dtype and device.

    Every output image is exactly a (possibly mirrored) HxW window of the zero-padded input."""
    b, c, h, w = x.shape
    gdev = _device_of(generator, x)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=gdev).to(x.device)  # (B,) crop offsets
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=gdev).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H) rows of the padded image
    cols = torch.arange(w, device=x.device).expand(b, w)  # (B, W)
    if flip:
        mirrored = torch.rand(b, generator=generator, device=gdev).to(x.device) < 0.5  # (B,)
        cols = torch.where(mirrored[:, None], w - 1 - cols, cols)
    cols = cols + dx[:, None]
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p), zeros
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))  # (B, C, H, W+2p)
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))  # (B, C, H, W)


def iterate_batches(
    x_u8: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    shuffle: bool,
    augment: bool,
    generator: torch.Generator | None,
    drop_last: bool,
    flip: bool = True,
    pad: int = PAD,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of (x, y) batches: x float32 in [0, 1] (B, C, H, W) on x_u8's device, y (B,) int64.

    shuffle: a fresh permutation from `generator` each call; augment: `augment_batch` per batch (done on uint8,
    before the conversion); drop_last: skip the final partial batch. Float input is passed through unscaled."""
    n = x_u8.shape[0]
    order = None
    if shuffle:
        order = torch.randperm(n, generator=generator, device=_device_of(generator, x_u8)).to(x_u8.device)  # (N,)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
        xb, yb = x_u8[idx], y[idx]
        if augment:
            xb = augment_batch(xb, generator, pad=pad, flip=flip)
        xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
        yield xb, yb
