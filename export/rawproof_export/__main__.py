"""Entry point of ``python -m rawproof_export``."""

from __future__ import annotations

import sys

from rawproof_export.cli import main

sys.exit(main())
