"""`sedd perplexity`."""

from __future__ import annotations
