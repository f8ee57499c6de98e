"""Live statistics (issue #16): the KPI engine on the bus, its windows, the figures' definitions and the
supervisors' subscription feed. Engines floor: imports ``cti``, the ACD's and the dialer's events (and the
dialer's figure definitions), the IVR's events; nothing of the application."""
