"""Where the browser tests find Chromium, and whether CI (which must run them) is asking."""
from __future__ import annotations

import os

#: The browser the browser tests drive (``$MONOAI_TEST_CHROMIUM`` to point elsewhere).
CHROMIUM = os.environ.get("MONOAI_TEST_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
