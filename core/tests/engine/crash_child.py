"""Run one sync of a crash-test world in this process; a fake kills it with SIGKILL mid-write.

    python -m core.tests.engine.crash_child FOLDER SIDE HOOK ON_CALL MODE

SIDE is ``erp`` or ``sink``: whose HOOK dies after applying its ON_CALL-th call. MODE is ``bulk``,
``single`` or ``accounts`` (single creates, missing sink accounts created).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from core.tests.engine.harness import World


def main() -> None:
    folder, side, hook, on_call, mode = sys.argv[1:]
    world = World.reopen(Path(folder))
    fake = world.erp if side == "erp" else world.sink
    fake.faults.apply_then_die(hook, on_call=int(on_call))
    asyncio.run(world.sync(bulk=mode == "bulk", create_missing_accounts=mode == "accounts"))
    sys.exit(3)  # the fault should have killed us before this


if __name__ == "__main__":
    main()
