"""Exponential moving average of the weights (REF ``model/ema.py``).

Update n (counted from 1, incremented first) uses decay d_n = min(train.ema, (1 + n) / (10 + n)):

    ema <- ema - (1 - d_n) (ema - theta)

Validation, snapshots and the published weights use the EMA values.
"""

from __future__ import annotations

import contextlib

import torch


class EMA:
    """Exponential moving average of the trainable parameters (REF ``model/ema.py``).

    Update n (counted from 1) uses decay d = min(decay, (1 + n) / (10 + n)):
    shadow <- shadow - (1 - d) (shadow - param).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        n = self.num_updates
        d = min(self.decay, (1 + n) / (10 + n))
        params = dict(model.named_parameters())
        names = list(self.shadow)
        # shadow + (1 - d)(param - shadow), the same update as shadow - (1 - d)(shadow - param),
        # in one fused call over all tensors
        torch._foreach_lerp_([self.shadow[k] for k in names], [params[k].detach() for k in names], 1 - d)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with the EMA values in place of the parameters."""
        out = dict(model.state_dict())
        out.update(self.shadow)
        return out

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.shadow:
            self.shadow[name].copy_(state[name])

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Temporarily put the EMA weights into `model` (store, copy, restore)."""
        params = dict(model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for n, v in self.shadow.items():
                params[n].copy_(v)
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, v in saved.items():
                    params[n].copy_(v)
