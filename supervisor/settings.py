"""settings.json: the launch settings that outlive any one app-server."""

from __future__ import annotations

import os

from supervisor.lean import Value
from supervisor.state_read import StateFileError, read_json_object

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    StrPath = str | os.PathLike[str]

REMOTE_CONTROL_KEY = "remoteControlEnabled"
AUTO_UPDATE_KEY = "autoUpdateEnabled"


class Settings(Value):
    __slots__ = ("auto_update_enabled", "extra", "remote_control_enabled")

    def __init__(
        self,
        remote_control_enabled: bool = False,
        # Whether bootstrap starts the updater (`bootstrap --no-auto-update` saves false).
        auto_update_enabled: bool = True,
        # Keys this version does not know, written back untouched.
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.remote_control_enabled = remote_control_enabled
        self.auto_update_enabled = auto_update_enabled
        self.extra: dict[str, Any] = {} if extra is None else extra

    def with_remote_control(self, enabled: bool) -> Settings:
        return self.replace(remote_control_enabled=enabled)

    def with_auto_update(self, enabled: bool) -> Settings:
        return self.replace(auto_update_enabled=enabled)

    def to_json(self) -> dict[str, Any]:
        value = {**self.extra, REMOTE_CONTROL_KEY: self.remote_control_enabled}
        # Only when off: a home that never turned it off keeps codex's file as it is.
        if not self.auto_update_enabled:
            value[AUTO_UPDATE_KEY] = False
        return value


def _flag(path: StrPath, value: dict[str, Any], key: str, default: bool) -> bool:
    flag = value.get(key, default)
    if not isinstance(flag, bool):
        raise StateFileError(f"{path}: {key} must be true or false, not {flag!r}")
    return flag


def settings_from_json(path: StrPath, value: dict[str, Any]) -> Settings:
    known = (REMOTE_CONTROL_KEY, AUTO_UPDATE_KEY)
    return Settings(
        remote_control_enabled=_flag(path, value, REMOTE_CONTROL_KEY, False),
        auto_update_enabled=_flag(path, value, AUTO_UPDATE_KEY, True),
        extra={key: item for key, item in value.items() if key not in known},
    )


def load_settings(path: StrPath) -> Settings:
    """Defaults when the file is missing; an error naming the file when it is corrupt
    (never reset: the user may want what is in it)."""
    value = read_json_object(path)
    return Settings() if value is None else settings_from_json(path, value)


def save_settings(path: StrPath, settings: Settings) -> None:
    from supervisor.statefile import write_json_atomic  # writers only

    write_json_atomic(path, settings.to_json())
