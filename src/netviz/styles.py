"""How attribution maps are drawn, as options: the grid's styles and the clip percentile. A leaf, so
the command's options (checked before any work) and the drawing code read the same names."""

from __future__ import annotations

from netviz.errors import NetvizError

STYLES = ("overlay", "heatmap")


def check_drawing(style: str, percentile: float) -> None:
    """Fail on drawing options before any attribution is computed."""
    if style not in STYLES:
        raise NetvizError(f"unknown style '{style}': use overlay or heatmap")
    if not 0 < percentile <= 100:
        raise NetvizError(f"clip percentile must be in (0, 100], not {percentile}")
