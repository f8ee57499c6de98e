"""Channel and call tracking from AMI events (``CallTracker``) and its records. Pure, sans-I/O.

Must not import Twisted, sockets, a database, the clock, or any engine package.
"""

from cti.calls.model import HANDED_OVER_TXT, VANISHED_TXT, Call, Channel, device_of
from cti.calls.tracker import CallTracker

__all__ = ["HANDED_OVER_TXT", "VANISHED_TXT", "Call", "CallTracker", "Channel", "device_of"]
