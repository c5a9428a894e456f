"""Rule files (YAML) and the engine that runs them: `RuleSet.load(folders)` reads and layers the
files (raising `FileError` naming file, line and field), `RuleEngine(ruleset)` is the detector,
`RuleWatcher(folders).poll()` notices edits so a daemon can reload without a restart."""
from faultwarden.detectors.rules.engine import RuleEngine
from faultwarden.detectors.rules.model import Rule, json_schema
from faultwarden.detectors.rules.ruleset import LoadedRule, RuleSet, RuleWatcher

__all__ = ["LoadedRule", "Rule", "RuleEngine", "RuleSet", "RuleWatcher", "json_schema"]
