"""Detectors: the rule engine and the isolation forest.

Events reach detectors as plain mappings of dotted field names; findings leave as small typed
records (`Finding`). Nothing here imports `faultwarden.daemon`.
"""
