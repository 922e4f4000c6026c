"""Where an index lives when none is named: ``$LOUPE_DB``, else the per-user data folder.

Apart from the store on purpose (standard library and platformdirs only): ``loupe search``
finds the index folder, and a server of it, before it imports LanceDB.
"""

from __future__ import annotations

import os


def default_db_dir() -> str:
    """$LOUPE_DB, else the per-user data directory."""
    env = os.environ.get("LOUPE_DB")
    if env:
        return env
    from platformdirs import user_data_dir

    return os.path.join(user_data_dir("loupe", appauthor=False), "db")
