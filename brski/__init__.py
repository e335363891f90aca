"""brski: the sans-IO core shared by the MASA, the registrar and the pledge simulator.

Nothing in this package opens a socket, reads the clock or touches a database
(that is ``brski_storage``'s job); callers pass bytes and ``now=`` in and get
bytes and decisions out.
"""

from __future__ import annotations

from brski.errors import BrskiError, LocalError, PeerError

__all__ = ["BrskiError", "LocalError", "PeerError", "__version__"]

__version__ = "0.1.0"
