"""The detectors a command runs, built from the resolved config.

The detectors speak of their own parameters (``k must be a positive integer``); here, where the values come
from the ``evaluate`` section, an error also names the config key the user set.
"""

from __future__ import annotations

from hood.detectors import Detector, DetectorContext
from hood.detectors.base import option_for
from hood.errors import ConfigError, DetectorParameterError


def build_detectors(ctx: DetectorContext, methods: list[str]) -> dict[str, Detector]:
    """``{method: ctx.detector(method)}`` (combinations share their parts' instances); a parameter out of
    range is one ConfigError led by its key: ``evaluate.knn_k: k must be a positive integer, got 0``."""
    try:
        return {m: ctx.detector(m) for m in methods}
    except DetectorParameterError as err:
        option = option_for(err)
        raise ConfigError(f"evaluate.{option}: {err}" if option else str(err)) from None
