"""ACD: skills-based routing of waiting calls to agents."""
