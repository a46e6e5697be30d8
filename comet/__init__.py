"""comet node: holds client connections (TCP and WebSocket) and fans pushes out to them in mid order."""
