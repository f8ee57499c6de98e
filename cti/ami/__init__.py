"""Asterisk Manager Interface: sans-I/O codec and the Twisted client."""
