"""Trial placement: how much of a GPU each trial asks Ray for, from its predicted memory. Pure (no torch, no ray).

Predicted device memory of one training trial, in bytes:

    context                                       the CUDA context and allocator slack (CONTEXT_BYTES)
  + params * BYTES_PER_PARAM                      fp32 weights, gradients and SGD momentum, plus the best-checkpoint
                                                  copy and bf16 casts (16 bytes per parameter)
  + max(batch_size * graphs, eval_batch_size)
      * act_elems * act_bytes                     activations saved for backward: `act_elems` per image (counted
                                                  on the meta device by workers.memory_probe), 3 bytes each under
                                                  bf16 autocast (bf16 conv inputs, some fp32 normalisation inputs;
                                                  4 in fp32), times 2 graphs for methods that backprop through a
                                                  clean and an adversarial forward (TRADES, MART, GAT, WAR);
                                                  the evaluation attack backprops to the input of one graph
  + images_on_device * channels * size**2         the uint8 dataset held on the device (train, validation, test)

times SAFETY (allocator fragmentation, cuDNN workspaces, the attack's input-gradient graph). A trial then gets the
smallest GPU fraction in FRACTIONS (no smaller than `min_fraction`) whose share of the GPU's memory holds it, so
small grid members share a GPU and a network that needs more than half of one gets a whole one; without GPUs every
trial runs on CPUs alone. The constants are conservative estimates, not yet fitted to measured peaks on a GPU
(`torch.cuda.max_memory_allocated` of a few grid members is the calibration to do on a GPU machine).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
CONTEXT_BYTES = 600 * 2**20  # CUDA context + caching-allocator slack per process
BYTES_PER_PARAM = 16  # fp32 weight, gradient, momentum, best-checkpoint copy
SAFETY = 1.3  # multiplier on the sum: fragmentation, workspaces, the attack's graph
FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # GPU shares a trial may ask for
SINGLE_GRAPH_METHODS = frozenset({"clean", "sat", "fgsm"})  # backprop through one forward pass per step


@dataclass(frozen=True)
class Resources:
    cpu: float  # CPU cores
    gpu: float  # fraction of one GPU (0 on a CPU-only cluster)
    memory_gib: float  # predicted device memory, GiB

    def as_ray(self) -> dict[str, float]:
        """Ray's resource dict ({"CPU": 1, "GPU": 0.25}); no GPU key on CPU-only placement."""
        return {"CPU": self.cpu, **({"GPU": self.gpu} if self.gpu > 0 else {})}


def predict_memory_gib(*, params: int, batch_size: int, act_elems_per_image: float, method: str,
                       images_on_device: int, eval_batch_size: int = 0, channels: int = 3, image_size: int = 32,
                       bf16: bool = True) -> float:
    """Predicted peak device memory of one trial in GiB (see the module docstring for the terms)."""
    if min(params, batch_size, eval_batch_size, images_on_device) < 0 or act_elems_per_image < 0:
        raise ValueError("params, batch sizes, act_elems_per_image and images_on_device must be >= 0")
    graphs = 1 if method in SINGLE_GRAPH_METHODS else 2
    activations = max(batch_size * graphs, eval_batch_size) * act_elems_per_image * (3 if bf16 else 4)
    data = images_on_device * channels * image_size * image_size
    return SAFETY * (CONTEXT_BYTES + params * BYTES_PER_PARAM + activations + data) / GIB


def gpu_fraction(memory_gib: float, *, gpu_memory_gib: float, min_fraction: float = 0.25) -> float:
    """The smallest share of one GPU (from FRACTIONS, >= min_fraction) whose memory holds `memory_gib`; 1.0 when
    even a whole GPU is too small (the trial then fails with out-of-memory rather than waiting forever)."""
    if gpu_memory_gib <= 0:
        raise ValueError(f"gpu_memory_gib must be > 0, got {gpu_memory_gib}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must lie in (0, 1], got {min_fraction}")
    for f in FRACTIONS:
        if f >= min_fraction and memory_gib <= f * gpu_memory_gib:
            return f
    return 1.0


def place(memory_gib: float, *, cluster_gpus: float, gpu_memory_gib: float, cpus: float = 1.0,
          min_fraction: float = 0.25) -> Resources:
    """A trial's Ray resources: `cpus` CPU cores and a GPU share sized by memory, or CPUs alone without GPUs."""
    if cluster_gpus <= 0:
        return Resources(cpu=cpus, gpu=0.0, memory_gib=memory_gib)
    return Resources(cpu=cpus, gpu=gpu_fraction(memory_gib, gpu_memory_gib=gpu_memory_gib, min_fraction=min_fraction),
                     memory_gib=memory_gib)
