"""Log templates: mined online with Drain3 while fitting, then frozen.

The model file keeps the templates as plain data (id, template text, size), never Drain3's own
jsonpickle snapshot: loading a jsonpickle snapshot can build arbitrary objects, and a model file
must not be able to run code. A frozen `TemplateBook` rebuilds Drain's prefix tree from that list
and only matches (`Drain.match`, which never creates or changes a cluster), so scoring is
deterministic and the same before and after a save/load round trip. A line that matches no
training template counts as *unseen*: that is the signal, so it is not learnt at score time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from faultwarden.detectors.anomaly.spec import ModelSpec

_CACHE_LIMIT = 50_000


def _config(spec: ModelSpec):
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    # An explicit config: without one, Drain3 reads ./drain3.ini from whatever the cwd is.
    config = TemplateMinerConfig()
    config.drain_sim_th = spec.drain_sim_th
    config.drain_depth = spec.drain_depth
    config.masking_instructions = [MaskingInstruction(pattern, name) for pattern, name in spec.masks]
    config.snapshot_compress_state = False
    return config


def mine(spec: ModelSpec, messages: Iterable[str]) -> "TemplateBook":
    """Feed every training message to a Drain3 TemplateMiner; freeze what it learnt."""
    from drain3 import TemplateMiner

    miner = TemplateMiner(persistence_handler=None, config=_config(spec))
    for message in messages:
        miner.add_log_message(message)
    clusters = sorted(miner.drain.clusters, key=lambda c: c.cluster_id)
    return TemplateBook(spec, [Template(c.cluster_id, c.get_template(), c.size) for c in clusters])


@dataclass(frozen=True)
class Template:
    id: int
    text: str
    size: int   # training lines that joined it


class TemplateBook:
    """Frozen templates: message → template id, or None for a template unseen in training."""

    def __init__(self, spec: ModelSpec, templates: list[Template]):
        from drain3 import TemplateMiner
        from drain3.drain import LogCluster

        self.templates = templates
        self.by_id = {t.id: t for t in templates}
        self._miner = TemplateMiner(persistence_handler=None, config=_config(spec))
        drain = self._miner.drain
        for t in templates:
            # Templates were joined with single spaces and Drain splits on whitespace: same tokens.
            cluster = LogCluster(drain.get_content_as_tokens(t.text), t.id)
            cluster.size = t.size
            drain.id_to_cluster[t.id] = cluster
            drain.add_seq_to_prefix_tree(drain.root_node, cluster)
        drain.clusters_counter = max((t.id for t in templates), default=0)
        self._cache: dict[str, int | None] = {}

    def classify(self, message: str) -> int | None:
        masked = self._miner.masker.mask(message)
        if masked in self._cache:
            return self._cache[masked]
        cluster = self._miner.drain.match(masked, full_search_strategy="fallback")
        found = None if cluster is None else cluster.cluster_id
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[masked] = found
        return found

    def text(self, template_id: int) -> str:
        return self.by_id[template_id].text

    def to_data(self) -> list[list[Any]]:
        return [[t.id, t.text, t.size] for t in self.templates]

    @classmethod
    def from_data(cls, spec: ModelSpec, data: list[list[Any]]) -> "TemplateBook":
        return cls(spec, [Template(int(i), str(text), int(size)) for i, text, size in data])
