"""benchmarks/run's command line: it answers --help and refuses what it does not know before it
installs, starts or measures anything (the run itself is not a test: it takes ~25 minutes)."""
import subprocess
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run"


def test_help_names_the_comparisons_and_the_output():
    done = subprocess.run(["bash", str(RUN), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for word in ("rsyslog", "ElastAlert2", "results.md", "--quick", "--es-url"):
        assert word in done.stdout


def test_unknown_option_is_a_usage_error():
    done = subprocess.run(["bash", str(RUN), "--fast"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "unknown option --fast" in done.stderr
