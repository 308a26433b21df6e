"""settings.json: the launch settings that outlive any one app-server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.statefile import StateFileError, read_json_object, write_json_atomic

REMOTE_CONTROL_KEY = "remoteControlEnabled"


@dataclass(frozen=True)
class Settings:
    remote_control_enabled: bool = False
    # Keys this version does not know, written back untouched.
    extra: dict[str, Any] = field(default_factory=dict)

    def with_remote_control(self, enabled: bool) -> Settings:
        return Settings(remote_control_enabled=enabled, extra=self.extra)


def settings_from_json(path: Path, value: dict[str, Any]) -> Settings:
    extra = {key: item for key, item in value.items() if key != REMOTE_CONTROL_KEY}
    enabled = value.get(REMOTE_CONTROL_KEY, False)
    if not isinstance(enabled, bool):
        raise StateFileError(f"{path}: {REMOTE_CONTROL_KEY} must be true or false, not {enabled!r}")
    return Settings(remote_control_enabled=enabled, extra=extra)


def load_settings(path: Path) -> Settings:
    """Defaults when the file is missing; an error naming the file when it is corrupt
    (never reset: the user may want what is in it)."""
    value = read_json_object(path)
    return Settings() if value is None else settings_from_json(path, value)


def save_settings(path: Path, settings: Settings) -> None:
    write_json_atomic(path, {**settings.extra, REMOTE_CONTROL_KEY: settings.remote_control_enabled})
