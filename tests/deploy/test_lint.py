"""The deployment files pass their linters on every run: cfn-lint, hadolint, shellcheck."""

from __future__ import annotations

import subprocess

from tests.deploy.conftest import ROOT, tool


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_cloudformation_templates_pass_cfn_lint() -> None:
    templates = sorted(str(p) for p in (ROOT / "infrastructure").glob("*.yml"))
    assert len(templates) == 3
    result = _run(tool("cfn-lint"), *templates)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_would_catch_a_broken_template(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.yml"
    text = (ROOT / "infrastructure" / "service.yml").read_text()
    broken.write_text(text.replace("Type: AWS::ECS::Service", "Type: AWS::ECS::Servise"))
    assert _run(tool("cfn-lint"), str(broken)).returncode != 0


def test_dockerfile_passes_hadolint() -> None:
    result = _run(tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_root_image(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rooted = tmp_path / "Dockerfile"
    rooted.write_text((ROOT / "Dockerfile").read_text().replace("USER 10001:10001", "USER root"))
    assert _run(tool("hadolint"), str(rooted)).returncode != 0


def test_deploy_script_passes_shellcheck() -> None:
    result = _run(tool("shellcheck"), "deploy.sh")
    assert result.returncode == 0, result.stdout + result.stderr
