"""The test harness itself: each run has a PostgreSQL database of its own, and .ci/run changes
nothing on a machine's existing PostgreSQL."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from tests import conftest

ROOT = Path(__file__).parents[1]
TRUST_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


# -- a PostgreSQL database per session ------------------------------------------------------

def _databases(base: str) -> set[str]:
    engine = create_engine(base)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_this_session_has_a_database_no_other_run_shares(pg_url: str | None) -> None:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base or pg_url is None:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    name = make_url(pg_url).database
    shared = f"{make_url(base).database or 'postgres'}_replywindow"

    assert name != shared
    assert name is not None and name.startswith(shared + "_")
    assert str(os.getpid()) in name
    assert name in _databases(base)


@pytest.mark.postgres
def test_two_sessions_get_two_databases_and_each_drops_only_its_own() -> None:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL to test against")

    first = conftest._pg_create_test_db(base)
    second = conftest._pg_create_test_db(base)
    try:
        assert first != second
        conftest._pg_drop_test_db(base, first)
        left = _databases(base)
        assert first not in left
        assert second in left
    finally:
        conftest._pg_drop_test_db(base, first)
        conftest._pg_drop_test_db(base, second)
    assert second not in _databases(base)


def test_dropping_is_best_effort() -> None:
    conftest._pg_drop_test_db("postgresql+psycopg://nobody@127.0.0.1:1/none", "x")  # no raise


# -- .ci/run --------------------------------------------------------------------------------

def _fake(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _ci_run(tmp_path: Path, *, postgres_installed: bool, chromium_installed: bool = True,
            env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """.ci/run on a pretend machine; the commands it ran, and the TEST_DATABASE_URL it gave
    the tests."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    calls = tmp_path / "calls"
    calls.touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    def record(name: str) -> str:
        return f'echo "{name} $*" >> {calls}\n'

    stash = tmp_path / "stash"  # where the pretend apt-get installs pg_isready from
    stash.mkdir()
    _fake(stash, "pg_isready", record("pg_isready") + "exit 0\n")
    if postgres_installed:
        shutil.copy(stash / "pg_isready", bin_dir / "pg_isready")
    _fake(bin_dir, "apt-get", record("apt-get") + (
        f'[ "$1" = install ] && {shutil.which("cp")} -p {stash}/pg_isready {bin_dir}/\n'
        "exit 0\n"))
    for tool in ("runuser", "psql", "pg_ctlcluster", "sudo", "su"):
        _fake(bin_dir, tool, record(tool) + "exit 0\n")
    if chromium_installed:
        _fake(bin_dir, "chromium", record("chromium") + "exit 0\n")
    _fake(repo, "dev", record("dev") + f'echo "TEST_DATABASE_URL=$TEST_DATABASE_URL" >> {calls}\n')

    done = subprocess.run([str(bin_dir / "bash"), str(repo / ".ci" / "run")],
                          env={"PATH": str(bin_dir), **(env or {})}, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done
    ran = calls.read_text().splitlines()
    assert "dev test" in ran, ran
    [url] = [line.split("=", 1)[1] for line in ran if line.startswith("TEST_DATABASE_URL=")]
    return ran, url


def test_ci_run_leaves_an_existing_postgres_alone(tmp_path: Path) -> None:
    ran, url = _ci_run(tmp_path, postgres_installed=True)

    assert url == TRUST_URL
    assert not [line for line in ran if line.split()[0] in ("runuser", "psql", "sudo", "su")]
    assert not any("ALTER" in line or "PASSWORD" in line for line in ran)
    assert not [line for line in ran if line.startswith("apt-get")]


def test_ci_run_keeps_a_given_test_database_url(tmp_path: Path) -> None:
    given = "postgresql+psycopg://ci@db.example:5432/ci"
    ran, url = _ci_run(tmp_path, postgres_installed=True, env={"TEST_DATABASE_URL": given})

    assert url == given
    assert not any("ALTER" in line for line in ran)


def test_ci_run_sets_a_password_only_on_the_postgres_it_installed(tmp_path: Path) -> None:
    ran, url = _ci_run(tmp_path, postgres_installed=False)

    assert any(line.startswith("apt-get install") for line in ran), ran
    assert any(line.startswith("runuser") and "ALTER USER postgres PASSWORD" in line
               for line in ran), ran
    assert url == "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"


def test_ci_run_installs_chromium_for_the_report_page_test(tmp_path: Path) -> None:
    ran, _ = _ci_run(tmp_path, postgres_installed=True, chromium_installed=False)

    assert "apt-get install -y -q chromium" in ran, ran
    assert ran.index("apt-get update -q") < ran.index("apt-get install -y -q chromium")
