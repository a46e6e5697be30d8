"""``python -m message -c conf/message.conf``: run one message node until SIGTERM/SIGINT."""
from __future__ import annotations

import sys
from typing import Sequence

from message.config import load
from message.node import MessageNode
from thirdparty.runtime import role_main


def main(argv: Sequence[str] | None = None) -> int:
    return role_main("message", load, MessageNode, argv)


if __name__ == "__main__":
    sys.exit(main())
