"""web node: the public HTTP API for clients and the admin HTTP API for back ends."""
