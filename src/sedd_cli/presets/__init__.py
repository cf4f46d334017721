"""YAML presets shipped as package data (tiny, names, small, medium)."""
