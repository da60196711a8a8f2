"""``python -m telemetry_otel``: the ``telemetry-otel`` command."""

import sys

from telemetry_otel.cli import main

sys.exit(main())
