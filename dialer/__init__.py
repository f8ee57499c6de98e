"""Outbound dialer: campaigns, lead lists, pacing and compliance."""
