"""``python -m approver`` is the same as the ``vpcep-approver`` command."""

import sys

from approver.cli import main

sys.exit(main())
