"""The provider names: read from the ``corral.providers`` entry points.

A provider is registered once, as an entry point of its distribution (corral's
own four in its ``pyproject.toml``; a third-party package adds its own the
same way). The contract's validation, ``rpc.describe``, settings validation
and the documentation take the names from here; the daemon loads the
providers themselves from the same entry points
(``corral.supervisor.providers.registry``). Reading entry points only reads
installed metadata: nothing of the daemon is imported.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points

ENTRY_POINT_GROUP = "corral.providers"
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
"""What a provider name looks like (entry points with other names are ignored)."""


@functools.cache
def provider_entry_points() -> dict[str, EntryPoint]:
    """name → entry point, sorted by name; the first distribution wins a name."""
    import re

    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if re.match(NAME_PATTERN, ep.name) and ep.name not in found:
            found[ep.name] = ep
    return dict(sorted(found.items()))


def provider_names() -> tuple[str, ...]:
    """Every registered provider name, sorted."""
    return tuple(provider_entry_points())
