"""Agent console and supervisor wallboard: websocket hub, protocol and web pages."""
