"""`sedd tokenize, noise, cipher-demo, loss`."""

from __future__ import annotations
