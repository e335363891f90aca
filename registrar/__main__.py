from __future__ import annotations

import sys

from registrar.cli import main

sys.exit(main())
