from __future__ import annotations

import sys

from brski_cli import main

sys.exit(main())
