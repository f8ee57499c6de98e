"""The application: the one process that wires the kernel, the engines and the hub (top floor)."""
