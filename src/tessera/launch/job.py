"""The watchdog inside a cluster job: `python -m tessera.launch.job RUN_FOLDER POLICY -- CMD`.

A SLURM batch script (or a pod) runs this on its first node. It supervises CMD (`srun ...
torchrun ...`) with the policy given as JSON, and writes attempts to the run folder's journal
only: the registry lives on the machine the run was launched from, which reads the journal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tessera.launch.options import WatchPolicy
from tessera.launch.watchdog import Watchdog


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m tessera.launch.job RUN_FOLDER POLICY_JSON -- COMMAND...")
        return 2
    folder, policy = Path(argv[0]), WatchPolicy(**json.loads(argv[1]))
    watchdog = Watchdog(folder, argv[3:], policy, program=[])
    return watchdog.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
