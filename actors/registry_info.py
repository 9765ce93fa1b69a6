"""The registry's requests about the daemon as a whole: settings, info, health,
notifications and conflicts.

A mixin of :class:`~corral.actors.registry.RegistryActor` (these handlers run
on the registry's thread and read its state); kept apart so that the registry
module holds the session map, guards and lifecycle only. The dispatch table
names them as ``RegistryActor.rpc_*``.
"""

from __future__ import annotations

from typing import Any

import apsw
import pykka

from corral.actors import db
from corral.actors import settings as settings_mod
from corral.actors.notifications import Notifications
from corral.actors.ports import Outbox, ProviderCatalog, ReplyTo
from corral.actors.settings import Settings
from corral.actors.store import Publication, SaveSetting, Write
from corral.protocol.errors import InternalError, InvalidParams


class InfoRequests:
    # provided by RegistryActor
    settings: Settings
    pinned_settings: frozenset[str]
    projects: dict[str, Any]
    notifications: Notifications
    _store: pykka.ActorRef[Any]
    _outbox: Outbox
    _catalog: ProviderCatalog
    _info: dict[str, Any]

    @property
    def conn(self) -> apsw.Connection:
        raise NotImplementedError

    def _enforce_retention(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ settings

    def rpc_settings_getAll(self, _params: dict[str, Any], _r: ReplyTo) -> dict[str, Any]:
        return {"settings": dict(self.settings.values)}

    def rpc_settings_set(self, params: dict[str, Any], reply_to: ReplyTo) -> None:
        key, value = params["key"], params["value"]
        if key in self.pinned_settings:
            raise InvalidParams(
                f"{key} is pinned by the operator's configuration and cannot be changed",
                field="key",
            )
        # Checked, then kept exactly as the client gave it: the answer, the
        # settings.changed event and settings.getAll all show that text.
        settings_mod.validate(key, value)
        stored = value
        values = dict(self.settings.values)
        values[key] = stored
        # Sessions share this Settings object: replacing the dict is atomic.
        self.settings.values = values
        snapshot = dict(values)
        self._store.tell(
            Write(
                [SaveSetting(key, stored)],
                [
                    Publication(
                        "settings.changed", {"key": key, "value": stored, "settings": snapshot}
                    )
                ],
                then=lambda _r: self._outbox.reply(reply_to, result={"settings": snapshot}),
                on_error=lambda e: self._outbox.reply(reply_to, error=InternalError(str(e))),
            )
        )
        if key in ("session_retention_count", "session_retention_days"):
            self._enforce_retention()

    # ------------------------------------------------------------ daemon, health, notices

    def rpc_daemon_info(self, _params: dict[str, Any], _r: ReplyTo) -> dict[str, Any]:
        providers = {}
        for name in self._catalog.names():
            available, detail = self._catalog.availability(name, self.settings.values, probe=True)
            if not self.settings.provider_enabled(name):
                available, detail = False, "disabled in provider_settings"
            providers[name] = {"available": available, "detail": detail}
        return {
            **self._info,
            "sessions": {"live": len(self.projects), "stored": db.count_sessions(self.conn)},
            "providers": providers,
        }

    def rpc_notifications_list(self, params: dict[str, Any], _r: ReplyTo) -> dict[str, Any]:
        limit = int(params.get("limit", 50))
        return {"notifications": self.notifications.newest(limit)}
