"""The faultwarden service: CLI, config, tailing, parsing, shipping, incidents and actions."""
