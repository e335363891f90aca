"""How the server roles' commands end: one exit-code convention.

0 success; 1 the operation was refused or failed (a :class:`BrskiError`,
printed with the check that failed); 2 usage or configuration error. Both
``brski masa`` and ``brski registrar`` (and ``python -m masa|registrar``)
run their async work through :func:`run_command`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from brski.errors import BrskiError, ConfigError

__all__ = ["run_command"]


def run_command(prog: str, fn: Callable[[], Awaitable[int]]) -> int:
    try:
        return asyncio.run(fn())  # type: ignore[arg-type]
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc.detail}", file=sys.stderr)
        return 2
    except BrskiError as exc:
        print(f"{prog}: {exc.title}: {exc.detail} (check: {exc.check})", file=sys.stderr)
        return 1
