"""Moments as the state files and `status --json` write them: ISO 8601 in UTC, to the
second (`2025-01-01T12:00:00+00:00`)."""

from __future__ import annotations

import datetime

UTC = datetime.UTC


def timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_timestamp(value: object) -> datetime.datetime | None:
    """A timestamp read back from a file; None for anything else. A moment without a
    zone is taken as UTC, and a trailing `Z` is accepted (Python 3.10 refuses it)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
