"""``python -m web -c conf/web.conf``: run one web node until SIGTERM/SIGINT."""
from __future__ import annotations

import sys
from typing import Sequence

from web.config import load
from web.node import WebNode
from thirdparty.runtime import role_main


def main(argv: Sequence[str] | None = None) -> int:
    return role_main("web", load, WebNode, argv)


if __name__ == "__main__":
    sys.exit(main())
