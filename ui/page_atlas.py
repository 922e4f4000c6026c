"""The Atlas page (a page script of ui/app.py's navigation)."""

import sys

from loupe.ui import atlas_view
from loupe.ui.core import parse_args

atlas_view.render(parse_args(sys.argv[1:]))
