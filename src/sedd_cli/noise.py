"""Noise schedules: diffusion time t in [0, 1] -> (sigma(t), dsigma(t)).

sigma is the *total* noise (the integral of the rate up to t) and dsigma its time derivative; the
forward process of every token is dp_t/dt = dsigma(t) Q p_t (sedd-spec §1). Both schedules are
plain objects with no parameters: calling one on a tensor of times returns two tensors of the
same shape and dtype; `inverse(sigma)` maps a total noise back to its time.
"""

from __future__ import annotations

import math

import torch

from .config import NoiseConfig
from .errors import ConfigError

__all__ = ["Noise", "LogLinearNoise", "GeometricNoise", "get_noise"]


class Noise:
    """Base class: `total(t)` = sigma(t), `rate(t)` = dsigma(t); `noise(t)` returns both."""

    def total(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, sigma: torch.Tensor) -> torch.Tensor:
        """The time t with sigma(t) = `sigma` (sigma is increasing in t); the first-hitting sampler
        uses it to name the time of an unmasking event it found in sigma."""
        raise NotImplementedError

    def __call__(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.total(t), self.rate(t)


class LogLinearNoise(Noise):
    """sigma(t) = -log(1 - (1 - eps) t), dsigma(t) = (1 - eps) / (1 - (1 - eps) t).

    For the absorbing graph the masking probability 1 - e^(-sigma(t)) is exactly (1 - eps) t, and
    dsigma / (e^sigma - 1) = 1 / t. With eps = 1e-3, sigma(1) = ln 1000 = 6.907755, dsigma(1) = 999.
    """

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def total(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-(1 - self.eps) * t)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def inverse(self, sigma: torch.Tensor) -> torch.Tensor:
        """t = (1 - e^-sigma) / (1 - eps): the masking probability over (1 - eps)."""
        return -torch.expm1(-sigma) / (1 - self.eps)

    def __repr__(self) -> str:
        return f"LogLinearNoise(eps={self.eps:g})"


class GeometricNoise(Noise):
    """sigma(t) = sigma_min^(1-t) sigma_max^t, dsigma(t) = sigma(t) (ln sigma_max - ln sigma_min)."""

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self._log_ratio = math.log(sigma_max) - math.log(sigma_min)

    def total(self, t: torch.Tensor) -> torch.Tensor:
        # computed as exp of the interpolated log for accuracy in float32
        return torch.exp(math.log(self.sigma_min) + t * self._log_ratio)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.total(t) * self._log_ratio

    def inverse(self, sigma: torch.Tensor) -> torch.Tensor:
        """t = (ln sigma - ln sigma_min) / (ln sigma_max - ln sigma_min)."""
        return (torch.log(sigma) - math.log(self.sigma_min)) / self._log_ratio

    def __repr__(self) -> str:
        return f"GeometricNoise(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g})"


def get_noise(cfg: NoiseConfig) -> Noise:
    """The schedule named by ``cfg.type``."""
    if cfg.type == "loglinear":
        return LogLinearNoise(cfg.eps)
    if cfg.type == "geometric":
        return GeometricNoise(cfg.sigma_min, cfg.sigma_max)
    raise ConfigError(f"noise.type must be loglinear or geometric, got {cfg.type!r}")
