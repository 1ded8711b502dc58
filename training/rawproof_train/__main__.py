from __future__ import annotations

import sys

from rawproof_train.cli import main

sys.exit(main())
