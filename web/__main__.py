"""``python -m web -c conf/web.conf``: run one web node until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import logging
import sys

from thirdparty.confload import ConfigError
from thirdparty.runtime import run_node, setup_logging
from web.config import load
from web.node import WebNode

log = logging.getLogger("web")

CONFIG_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web", description="pushcluster web node")
    parser.add_argument("-c", "--config", metavar="PATH", help="TOML config (default: built-in defaults)")
    parser.add_argument("--log-config", metavar="PATH", help="logging.config.fileConfig file")
    args = parser.parse_args(argv)
    try:
        setup_logging(args.log_config)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"--log-config {args.log_config}: {exc}")
    try:
        config = load(args.config)
    except ConfigError as exc:
        log.error("config %s: %s", args.config or "(defaults)", exc)
        return CONFIG_ERROR
    return run_node(WebNode(config))


if __name__ == "__main__":
    sys.exit(main())
