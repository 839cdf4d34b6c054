"""Naming what differs between two records of what something was made under (a stored threshold's settings,
a cached fit's key), so a refusal says which setting to change instead of "something differs"."""

from __future__ import annotations

from typing import Any

UNSET = "unrecorded"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"parts": {"heatmap": {"decoder": x}}}`` as ``{"parts.heatmap.decoder": x}``: nested settings are named whole."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differing(then: Any, now: dict[str, Any], only: bool = False) -> list[str]:
    """The flattened keys whose values differ (``only``: the keys of ``now`` alone, for a key any count matches)."""
    a, b = flatten(then if isinstance(then, dict) else {}), flatten(now)
    keys = list(b) if only else list(dict.fromkeys([*a, *b]))
    return [k for k in keys if a.get(k, UNSET) != b.get(k, UNSET)]


def said(d: Any, keys: list[str]) -> str:
    """``k 5, image_size 32``: the values of ``keys`` in ``d``, each value cut short (a setting may be any string)."""
    flat = flatten(d if isinstance(d, dict) else {})
    return ", ".join(f"{k.removeprefix('settings.')} {_short(flat.get(k, UNSET))}" for k in keys)


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
