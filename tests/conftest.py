"""Shared test setup: importable `tests/` (for `reference.*`) and quiet TF logs."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(_TESTS_DIR)
for _path in (_TESTS_DIR, _REPO_DIR):  # `reference.*`, and `mrcnn_tf` when not installed
    if _path not in sys.path:
        sys.path.insert(0, _path)
