"""message node: assigns message ids and stores messages (Redis or SQLite) for offline fetch."""
