.PHONY: test test-slow demo bench

# The one test command for a fresh machine (installs, starts Elasticsearch, runs pytest).
test:
	bash scripts/test.sh

# The long tests (volumes, outages, kill -9 loops) too.
test-slow:
	bash scripts/test.sh -m "slow or not slow"

demo:
	$(HOME)/.cache/faultwarden/venv/bin/faultwarden demo

bench:
	bash benchmarks/run
