"""Times as the stages compare them: int64 nanoseconds since the epoch (UTC)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["utc_ns", "utc_timestamp"]


def utc_ns(values, what: str | None = None) -> np.ndarray:
    """UTC times (strings, datetimes, tz-aware or naive = UTC) -> int64 ns since the epoch.

    Missing times become NaT's int64 (the minimum) unless ``what`` is given: then they raise
    ``ValueError`` naming ``what`` and their count."""
    t = pd.to_datetime(pd.Series(values), utc=True)
    if what is not None and t.isna().any():
        raise ValueError(f"{what}: {int(t.isna().sum())} missing time value(s)")
    return t.dt.tz_convert(None).astype("datetime64[ns]").to_numpy().view(np.int64)


def utc_timestamp(value) -> pd.Timestamp:
    """One time (string, datetime, Timestamp; naive = UTC) as a tz-aware UTC ``pd.Timestamp``."""
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
