"""`sedd convert, info`."""

from __future__ import annotations
