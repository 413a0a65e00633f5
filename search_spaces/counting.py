"""Closed-form parameter and FLOP counts of the stage-wise pre-activation ResNet body ("wrn", "preactresnet18") and
of DenseNet-BC ("densenet_bc").

Planning the 125-network depth grid by building every network on torch's meta device takes seconds; these
formulas take microseconds and import no torch. They count exactly what `workers.models.counting` counts
(tests/search_spaces/test_plan.py asserts equality with `model_counts` on random grid members):

    stem    3x3 conv C -> s, stride 1                  params 9*C*s          MACs H*W * 9*C*s
    block   BN(in), 3x3 conv in -> out (stride t),     params 2*in + 9*in*out + 2*out + 9*out*out (+ in*out)
            BN(out), 3x3 conv out -> out,              MACs h'*w' * (9*in*out + 9*out*out (+ in*out))
            1x1 shortcut when in != out or t != 1      with h' = ceil(h / t) (padding 1, or a 1x1 kernel)
    head    BN(c), linear c -> K with bias             params 2*c + c*K + K  MACs c*K

A stage's blocks after its first are identical, so a stage costs two block counts whatever its depth. A stage of
depth 0 is removed with its stride. Channels are `floor(base * width + 0.5)` (half up, as
`workers.models.registry.scale_channels`). `densenet_bc` has its own closed form (densenet_counts); other
models return None and are counted on the meta device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Body:
    stem: int  # stem conv output channels
    base: tuple[int, ...]  # per-stage channels at width 1
    strides: tuple[int, ...]  # stride of each stage's first block


BODIES: dict[str, Body] = {
    "wrn": Body(16, (16, 32, 64), (1, 2, 2)),
    "preactresnet18": Body(64, (64, 128, 256, 512), (1, 2, 2, 2)),
}


def _block(c_in: int, c_out: int, stride: int, hw: int) -> tuple[int, int, int]:
    """(params, MACs, output side) of one pre-activation block on an hw x hw input."""
    side = -(-hw // stride)  # ceil
    shortcut = c_in * c_out if c_in != c_out or stride != 1 else 0
    convs = 9 * c_in * c_out + 9 * c_out * c_out + shortcut
    return 2 * c_in + 2 * c_out + convs, side * side * convs, side


def analytic_counts(
    model: str, depths: tuple[int, ...], widths: tuple[float, ...], num_classes: int, channels: int, size: int
) -> tuple[int, int] | None:
    """(parameters, MACs of one size x size image), or None when the model or arguments are not covered (the
    caller then builds the network, which also produces the proper error for invalid arguments)."""
    if model == "densenet_bc":
        return densenet_counts(depths, widths, num_classes, channels, size)
    body = BODIES.get(model)
    if body is None or len(depths) != len(body.base) or len(widths) != len(body.base) or not any(depths):
        return None
    if any(d < 0 or int(d) != d for d in depths) or any(not math.isfinite(w) or w <= 0 for w in widths):
        return None
    chans = [math.floor(b * w + 0.5) for b, w in zip(body.base, widths, strict=True)]
    if min(chans) < 1:
        return None
    params, macs, hw, c = 9 * channels * body.stem, size * size * 9 * channels * body.stem, size, body.stem
    for depth, out, stride in zip(depths, chans, body.strides, strict=True):
        if depth == 0:
            continue
        p, m, hw = _block(c, out, stride, hw)  # the stage's first block changes channels and side
        p_rest, m_rest, _ = _block(out, out, 1, hw)  # the other depth - 1 are identical: counted once, multiplied
        params, macs, c = params + p + (depth - 1) * p_rest, macs + m + (depth - 1) * m_rest, out
    return params + 2 * c + c * num_classes + num_classes, macs + c * num_classes


def densenet_counts(
    depths: tuple[int, ...], widths: tuple[float, ...], num_classes: int, channels: int, size: int
) -> tuple[int, int] | None:
    """(parameters, MACs) of `densenet_bc` (workers.models.densenet) in closed form, or None when not covered.

    stem 3x3 conv C -> 2 k1 (no bias); a dense block of n bottleneck layers on c0 channels at side h: layer j
    (c = c0 + j k) has BN(c), 1x1 conv c -> 4k, BN(4k), 3x3 conv 4k -> k, so the block sums to
    params 2 S + 4k S + 8k n + 36 k^2 n and MACs h^2 (4k S + 36 k^2 n) with S = n c0 + k n (n - 1) / 2;
    a transition BN(c), 1x1 conv c -> floor(c / 2) at side h, then h // 2; head BN(c), linear c -> K with bias."""
    if len(depths) != 3 or len(widths) not in (1, 3) or not any(depths):
        return None
    if any(d < 0 or int(d) != d for d in depths) or any(not math.isfinite(w) or w <= 0 for w in widths):
        return None
    growths = [math.floor(w + 0.5) for w in (widths * 3 if len(widths) == 1 else widths)]
    if min(growths) < 1:
        return None
    c = 2 * growths[0]
    params, macs, hw, first = 9 * channels * c, size * size * 9 * channels * c, size, True
    for n, k in ((int(d), g) for d, g in zip(depths, growths, strict=True) if d > 0):
        if not first:  # a transition between two remaining dense blocks
            out = c // 2
            params, macs, hw = params + 2 * c + c * out, macs + hw * hw * c * out, hw // 2
            c = out
        first = False
        s = n * c + k * n * (n - 1) // 2  # the layers' input channels, summed
        params += 2 * s + 4 * k * s + 8 * k * n + 36 * k * k * n
        macs += hw * hw * (4 * k * s + 36 * k * k * n)
        c += n * k
    return params + 2 * c + c * num_classes + num_classes, macs + c * num_classes
