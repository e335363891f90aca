from __future__ import annotations

import sys

from masa.cli import main

sys.exit(main())
