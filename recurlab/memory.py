"""Memory a training step keeps for its backward pass, measured the same way on any device.

    from recurlab.memory import saved_bytes
    n = saved_bytes(lambda: model(idx, n_no_grad=4, n_grad=4, targets=idx).loss.backward())

On a CPU there is no peak-allocation counter; the bytes autograd saves for backward are what grows
with the iterations that get gradients (truncated backpropagation keeps them flat in r), so the
training benchmark and the model's tests read that.
"""

from __future__ import annotations

import torch


def saved_bytes(step) -> int:
    """Bytes autograd saves for backward while `step()` runs (CPU stand-in for peak memory)."""
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return saved
