"""rawproof_train: data preparation, models, differentiable channel and training loops (PyTorch)."""

from __future__ import annotations
