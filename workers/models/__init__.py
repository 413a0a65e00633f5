"""Models of the service, looked up by name: `build_model("wrn", depths=..., widths=..., ...)`.

Every model takes (B, C, H, W) images in [0, 1] pixel space, normalises them inside (`normalize.Normalize`),
returns (B, num_classes) logits, and offers `forward_with_blocks(x) -> (logits, [block outputs])`.
Importing this package registers: wrn, preactresnet18, densenet_bc, smallcnn.
"""

from workers.models import densenet, preactresnet, smallcnn, wrn  # noqa: F401  (register the models)
from workers.models.counting import count_macs, count_params, model_counts
from workers.models.normalize import Normalize, PixelClassifier
from workers.models.registry import build_model, list_models, register_model

__all__ = [
    "Normalize",
    "PixelClassifier",
    "build_model",
    "count_macs",
    "count_params",
    "list_models",
    "model_counts",
    "register_model",
]
