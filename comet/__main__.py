"""``python -m comet -c conf/comet.conf``: run one comet node until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import logging
import sys

from comet.config import load
from comet.node import CometNode
from thirdparty.confload import ConfigError
from thirdparty.runtime import run_node, setup_logging

log = logging.getLogger("comet")

CONFIG_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comet", description="pushcluster comet node")
    parser.add_argument("-c", "--config", metavar="PATH", help="TOML config (default: built-in defaults)")
    parser.add_argument("--log-config", metavar="PATH", help="logging.config.fileConfig file")
    args = parser.parse_args(argv)
    try:
        setup_logging(args.log_config)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"--log-config {args.log_config}: {exc}")
    try:
        config = load(args.config)
    except (ConfigError, OSError) as exc:
        log.error("config %s: %s", args.config, exc)
        return CONFIG_ERROR
    return run_node(CometNode(config))


if __name__ == "__main__":
    sys.exit(main())
