"""The harness gives a real node: index, search, and the server is the one we expect."""
import uuid

import pytest

pytestmark = pytest.mark.es


def test_index_and_search_on_a_real_node(es):
    # The test distribution has no `GET /` (the rest-root module is not in it): ask the nodes API.
    (node,) = es.nodes.info()["nodes"].values()
    assert node["version"].split(".")[0] in ("8", "9")
    index = f"fwtest-smoke-{uuid.uuid4().hex[:8]}"
    es.index(index=index, document={"message": "hello", "ml.loss": 0.5}, refresh=True)
    hits = es.search(index=index, query={"match": {"message": "hello"}})["hits"]["hits"]
    assert [h["_source"]["ml.loss"] for h in hits] == [0.5]
    es.indices.delete(index=index)
