"""The config file: defaults, typed validation with file:line: key errors, env secrets, masking."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from faultwarden.daemon.cli import cli

from faultwarden.daemon import config as cfg
from faultwarden.detectors.yamlfile import FileError


def write(tmp_path, text: str):
    path = tmp_path / "faultwarden.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_every_key_has_a_default_so_one_source_glob_works(tmp_path):
    c = cfg.load(str(write(tmp_path, "sources:\n  - paths: /var/log/train/*.log\n")))
    assert c.sources[0].paths == ["/var/log/train/*.log"]
    assert c.elasticsearch.hosts == [] and c.actions.restart.max_restarts == 3
    assert c.path.endswith("faultwarden.yaml")


@pytest.mark.parametrize("text, expected", [
    ("""
     sources:
       - paths: [a.log]
     elasticsearch:
       hosts: foo
     """, "faultwarden.yaml:4: elasticsearch.hosts: expected a list of URLs, got 'foo'"),
    ("""
     actions:
       restart:
         max_restart: 3
     """, "faultwarden.yaml:3: actions.restart.max_restart: unknown key"),
    ("""
     actions:
       restart:
         max_restarts: -1
     """, "faultwarden.yaml:3: actions.restart.max_restarts: Input should be greater than or equal to 0, got -1"),
    ("""
     sources:
       - format: json
     """, "faultwarden.yaml:2: sources.0: a source needs `paths` (files or globs) or `journald`"),
    ("sources: [\n", "faultwarden.yaml:2: not valid YAML"),
    ("""
     elasticsearch:
       hosts: [es.example:9200]
     """, "faultwarden.yaml:2: elasticsearch.hosts.0: expected a URL such as http://127.0.0.1:9200, got 'es.example:9200'"),
    ("""
     sources:
       - paths: [a.log]
         dataset: trainig
     """, "faultwarden.yaml:3: sources.0.dataset: Input should be 'training' or 'inference', got 'trainig'"),
    ("""
     logging:
       level: loud
     """, "faultwarden.yaml:2: logging.level: Input should be"),
    ("""
     notify:
       smtp:
         host: 127.0.0.1
     """, "faultwarden.yaml:2: notify.smtp.to: Field required"),
    ("""
     elasticsearch:
       flush_interval_s: 0
     """, "faultwarden.yaml:2: elasticsearch.flush_interval_s: Input should be greater than 0, got 0"),
    ("""
     elasticsearch:
       index_prefix: ML Jobs
     """, "faultwarden.yaml:2: elasticsearch.index_prefix: expected lowercase letters, digits and "
          ". _ + - (a letter or digit first, at most 200), got 'ML Jobs'"),
    ("""
     sources:
       - paths: [a.log]
         redact:
           patterns: ['tok_(']
     """, "faultwarden.yaml:4: sources.0.redact.patterns: not a valid regex (missing ), unterminated "
          "subpattern at position 4): 'tok_('"),
    ("- just\n- a list\n", "faultwarden.yaml:1: expected a mapping of sections"),
    ("""
     actions:
       restore:
         checkpoint_dirs: /data/ckpt
     """, "faultwarden.yaml:3: actions.restore.checkpoint_dirs: Input should be a valid list"),
], ids=["hosts not a list", "typo", "negative", "missing", "bad yaml", "host without scheme", "enum typo",
        "bad level", "smtp without recipients", "zero interval", "index prefix with a space", "bad redact regex",
        "not a mapping", "string for list"])
def test_broken_config_exits_2_naming_file_line_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(FileError) as err:
        cfg.load(str(path))
    assert str(err.value).startswith(f"{tmp_path}/{expected}")
    result = CliRunner().invoke(cli, ["run", "--config", str(path), "--check"])
    assert result.exit_code == 2
    assert f"faultwarden: {tmp_path}/{expected}" in result.output


def test_duplicate_key_is_an_error_not_a_silent_override(tmp_path):
    with pytest.raises(FileError, match=r":3: logging.level: duplicate key"):
        cfg.load(str(write(tmp_path, "logging:\n  level: info\n  level: debug\n")))


def test_secrets_come_from_the_environment_and_are_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("FAULTWARDEN_ES_PASSWORD", "hunter2")
    c = cfg.load(str(write(tmp_path, "elasticsearch:\n  hosts: [http://127.0.0.1:9200]\n  username: fw\n")))
    assert c.elasticsearch.password.get_secret_value() == "hunter2"
    assert cfg.masked(c)["elasticsearch"]["password"] == "**********"


def test_missing_file_named(tmp_path):
    with pytest.raises(FileError, match="no such config file"):
        cfg.load(str(tmp_path / "nope.yaml"))


def test_real_process_exits_2_with_the_message(tmp_path):
    path = write(tmp_path, "elasticsearch:\n  hosts: foo\n")
    done = subprocess.run([sys.executable, "-m", "faultwarden.daemon.cli", "run", "--config", str(path), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{path}:2: elasticsearch.hosts:" in done.stderr and "'foo'" in done.stderr


def test_check_prints_the_effective_config_with_secrets_masked(tmp_path):
    path = write(tmp_path, "sources:\n  - paths: [a.log]\nelasticsearch:\n  hosts: [http://127.0.0.1:9200]\n")
    done = subprocess.run([sys.executable, "-m", "faultwarden.daemon.cli", "run", "--config", str(path), "--check"],
                          capture_output=True, text=True, env={"FAULTWARDEN_ES_API_KEY": "s3cret", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout and "api_key: '**********'" in done.stdout
    assert "max_restarts: 3" in done.stdout


def test_the_committed_json_schema_is_the_models_own():
    import json
    from pathlib import Path

    committed = json.loads((Path(__file__).parent.parent / "docs/config.schema.json").read_text())
    assert committed == json.loads(json.dumps(cfg.json_schema())), \
        "regenerate: python -m faultwarden.daemon.config > docs/config.schema.json"
    assert "additionalProperties" in committed["$defs"]["Source"]  # typos are errors in editors too
