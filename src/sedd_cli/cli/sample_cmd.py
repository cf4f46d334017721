"""`sedd sample, infill`."""

from __future__ import annotations
