"""``python -m authz`` runs the ``authz`` command."""

import sys

from authz.cli import main

sys.exit(main())
