"""The Atlas page (a page script of ui/app.py's navigation)."""

import sys

from loupe.ui.core import parse_args
from loupe.ui.views import atlas as atlas_view

atlas_view.render(parse_args(sys.argv[1:]))
