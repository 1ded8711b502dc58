"""rawproof_export: ONNX export of trained NIP/FAN checkpoints and parity checks."""

from __future__ import annotations
