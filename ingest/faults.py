"""Named crash points, for tests that kill the process at an exact step (``CDR_FAULT=name``).

A real kill lands at an arbitrary instruction; these put it at the steps that matter (bytes staged but not
recorded, records written but not committed) so the crash tests are deterministic. Unset, they cost a
dictionary lookup.
"""

import os


def point(name: str) -> None:
    if os.environ.get("CDR_FAULT") == name:
        os._exit(86)
