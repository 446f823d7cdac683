"""What the shell's features work on: the configuration, the inventory, the status log and
the trust store.

Owned by whichever thread holds the state lock (the daemon's worker, or a CLI command
run in-process). ``config`` is replaced when the daemon reloads its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from certdrop.config import Config
from certdrop.store.eventlog import Logger
from certdrop.store.inventory import Inventory
from certdrop.store.truststore import TrustStore


@dataclass
class Context:
    config: Config
    inventory: Inventory
    log: Logger
    trust: TrustStore
