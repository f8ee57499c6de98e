"""The one configuration file: typed schema, YAML loader with file:line errors, examples, PBX config."""
