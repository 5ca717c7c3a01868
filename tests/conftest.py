"""Suite-wide settings.

dimctl picks its thread count from how busy the machine looks when a command starts
(dimctl/threads.py). The suite pins it to every usable core, torch's own default, so results do not
depend on what else ran at that moment (a resumed run must match an uninterrupted one bit for bit);
tests/test_threads.py and tests/cli/test_threads_cli.py unset it to test the choice itself.
"""

import os

from dimctl.threads import usable_cores

os.environ.setdefault("DIMCTL_THREADS", str(usable_cores()))
