"""``python -m authz`` runs the ``authz`` command."""

import sys

from authz.ops.cli import main

sys.exit(main())
