"""``python -m fabguard_station``: the ``fabguard-station`` command, for a station whose scripts are not on PATH."""

import sys

from fabguard_station.cli import main

sys.exit(main())
