"""``python -m comet -c conf/comet.conf``: run one comet node until SIGTERM/SIGINT."""
from __future__ import annotations

import sys
from typing import Sequence

from comet.config import load
from comet.node import CometNode
from thirdparty.runtime import role_main


def main(argv: Sequence[str] | None = None) -> int:
    return role_main("comet", load, CometNode, argv)


if __name__ == "__main__":
    sys.exit(main())
