"""Closed-form parameter and FLOP counts of the stage-wise pre-activation ResNet body ("wrn", "preactresnet18").

Planning the 125-network depth grid by building every network on torch's meta device takes seconds; these
formulas take microseconds and import no torch. They count exactly what `workers.models.counting` counts
(tests/search_spaces/test_plan.py asserts equality with `model_counts` on random grid members):

    stem    3x3 conv C -> s, stride 1                  params 9*C*s          MACs H*W * 9*C*s
    block   BN(in), 3x3 conv in -> out (stride t),     params 2*in + 9*in*out + 2*out + 9*out*out (+ in*out)
            BN(out), 3x3 conv out -> out,              MACs h'*w' * (9*in*out + 9*out*out (+ in*out))
            1x1 shortcut when in != out or t != 1      with h' = ceil(h / t) (padding 1, or a 1x1 kernel)
    head    BN(c), linear c -> K with bias             params 2*c + c*K + K  MACs c*K

A stage of depth 0 is removed with its stride. Channels are `floor(base * width + 0.5)` (half up, as
`workers.models.registry.scale_channels`). Other models return None and are counted on the meta device.
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
        for j in range(depth):
            p, m, hw = _block(c, out, stride if j == 0 else 1, hw)
            params, macs, c = params + p, macs + m, out
    return params + 2 * c + c * num_classes + num_classes, macs + c * num_classes
