from __future__ import annotations

import sys

from rawproof.cli import main

sys.exit(main())
