"""Adapters for third-party protocols and libraries (MessagePack-RPC, uhashring, TOML, logging); imports no role."""
