"""The README's two commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

import re

from .conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(python3 -m venv .*)\n```", text)


def test_readme_gives_two_setup_commands():
    main_job, tests = readme_commands()[:2]
    assert "pip install ." in main_job and "simtopo " in main_job
    assert "pip install -e '.[test]'" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = readme_commands()[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(line.startswith(tests) for line in ci.splitlines())
    assert "ruff check" in ci


def test_main_job_command_names_a_file_that_exists():
    main_job = readme_commands()[0]
    path = main_job.rsplit(" ", 1)[1]
    assert (ROOT / path).is_file()


def test_the_readme_python_examples_run(tmp_path, monkeypatch):
    """Every ```python block of the README, run as written from a copy of the checkout's
    experiments and topologies (so that its reports land in a temporary folder)."""
    import shutil

    import matplotlib

    matplotlib.use("Agg")
    for folder in ("experiments", "topologies"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "scratch" / "ultra8" / "summary.json").is_file()
    assert (tmp_path / "scratch" / "tp-sweep" / "sweep.csv").is_file()
    assert not (tmp_path / "reports").exists()  # nothing lands beside the reference output


def test_readme_shell_examples_never_write_committed_output():
    """Every example command that writes names a scratch place (or writes nothing): none may
    overwrite reports/, docs/ or benchmarks/results/ by running it as shown."""
    block = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    commands = [line for b in block for line in b.replace("\\\n", " ").splitlines()]
    for command in commands:
        if command.startswith("simtopo run ") and "--no-report" not in command:
            assert "--reports scratch" in command, command
        if command.startswith("simtopo sweep "):
            assert "--out scratch/" in command, command
        for flag in (" -o ", " --output ", " --write-mdp "):
            if flag in command:
                target = command.split(flag, 1)[1].split()[0]
                assert target.startswith("scratch/"), command
