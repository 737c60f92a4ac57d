"""Where the tests find the shared real-photo data (`../shared`, or $MRCNN_SHARED_DIR)."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("MRCNN_SHARED_DIR", os.path.join(REPO, "..", "shared"))
BALLOON = os.path.join(SHARED, "data", "balloon")
needs_balloon = pytest.mark.skipif(not os.path.isdir(BALLOON),
                                   reason=f"balloon VIA dataset not found at {os.path.abspath(BALLOON)} "
                                          f"(set MRCNN_SHARED_DIR)")
