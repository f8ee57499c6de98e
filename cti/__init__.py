"""CTI core: Asterisk AMI client, call tracking, domain events and commands, the server."""

__version__ = "0.1.0"
