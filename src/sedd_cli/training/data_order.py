"""The order in which training rows are seen: a pure function of (seed, epoch, offset).

Epoch e is a permutation of the training rows drawn from a generator seeded with (seed, e) (a
seeded `torch.multinomial` draw when the data carries sampling weights); the position
(epoch, offset) is saved in each checkpoint, so a resumed run continues the same stream.
"""

from __future__ import annotations

import torch

from ..errors import SeddError


class DataOrder:
    """Deterministic stream of training-row indices: epoch e is a permutation of range(n) drawn
    from a generator seeded with (seed, e) (or n weighted draws with replacement when `weights`
    is given). A batch that crosses an epoch end continues into the next epoch's order."""

    def __init__(
        self, n: int, seed: int, weights: torch.Tensor | None = None, epoch: int = 0, offset: int = 0
    ):
        if n < 1:
            raise SeddError("the training data is empty: check --data and --text-field")
        self.n = n
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = epoch
        self.offset = min(offset, n)
        self._cache: tuple[int, torch.Tensor] | None = None

    def order(self, epoch: int) -> torch.Tensor:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch * 7_919 + 17) % (2**63))
        if self.weights is not None:
            perm = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            perm = torch.randperm(self.n, generator=g)
        self._cache = (epoch, perm)
        return perm

    def next(self, count: int) -> torch.Tensor:
        """The next `count` row indices ``[count]``."""
        parts = []
        need = count
        while need > 0:
            if self.offset >= self.n:
                self.epoch += 1
                self.offset = 0
            take = min(need, self.n - self.offset)
            parts.append(self.order(self.epoch)[self.offset : self.offset + take])
            self.offset += take
            need -= take
        return torch.cat(parts)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}
