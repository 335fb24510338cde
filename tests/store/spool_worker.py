"""A process that spools verifications, for the spool tests (run as a script).

    python spool_worker.py DB FOLDER N

Appends N verifications (phones ``+6590000000`` + i), prints ``spooled`` and waits, holding its segment, until
it is killed or its stdin closes.
"""

from __future__ import annotations

import logging
import sys
import time

from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.store.base import Verification
from flask_otp_conversion.store.spool import Spool


def main() -> None:
    db, folder, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spool = Spool(
        SQLiteStore(db),
        folder,
        provider="tencent",
        match_window=900.0,
        logger=logging.getLogger("spool_worker"),
        autostart=False,
    )
    now = time.time()
    for i in range(count):
        spool.append(Verification(f"+{6590000000 + i}", None, now))
    print("spooled", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
