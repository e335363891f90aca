from __future__ import annotations

import sys

from join_proxy.cli import main

sys.exit(main())
