"""IVR: declarative call flows served over FastAGI and as a pyst2 AGI script."""
