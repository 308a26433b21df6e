"""settings.json: the launch settings that outlive any one app-server."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from supervisor.statefile import StateFileError, read_json_object, write_json_atomic

REMOTE_CONTROL_KEY = "remoteControlEnabled"
AUTO_UPDATE_KEY = "autoUpdateEnabled"


@dataclass(frozen=True)
class Settings:
    remote_control_enabled: bool = False
    # Whether bootstrap starts the updater (`bootstrap --no-auto-update` saves false).
    auto_update_enabled: bool = True
    # Keys this version does not know, written back untouched.
    extra: dict[str, Any] = field(default_factory=dict)

    def with_remote_control(self, enabled: bool) -> Settings:
        return replace(self, remote_control_enabled=enabled)

    def with_auto_update(self, enabled: bool) -> Settings:
        return replace(self, auto_update_enabled=enabled)

    def to_json(self) -> dict[str, Any]:
        value = {**self.extra, REMOTE_CONTROL_KEY: self.remote_control_enabled}
        # Only when off: a home that never turned it off keeps codex's file as it is.
        if not self.auto_update_enabled:
            value[AUTO_UPDATE_KEY] = False
        return value


def _flag(path: Path, value: dict[str, Any], key: str, default: bool) -> bool:
    flag = value.get(key, default)
    if not isinstance(flag, bool):
        raise StateFileError(f"{path}: {key} must be true or false, not {flag!r}")
    return flag


def settings_from_json(path: Path, value: dict[str, Any]) -> Settings:
    known = (REMOTE_CONTROL_KEY, AUTO_UPDATE_KEY)
    return Settings(
        remote_control_enabled=_flag(path, value, REMOTE_CONTROL_KEY, False),
        auto_update_enabled=_flag(path, value, AUTO_UPDATE_KEY, True),
        extra={key: item for key, item in value.items() if key not in known},
    )


def load_settings(path: Path) -> Settings:
    """Defaults when the file is missing; an error naming the file when it is corrupt
    (never reset: the user may want what is in it)."""
    value = read_json_object(path)
    return Settings() if value is None else settings_from_json(path, value)


def save_settings(path: Path, settings: Settings) -> None:
    write_json_atomic(path, settings.to_json())
