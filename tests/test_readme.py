"""The README stays true: its set-up commands and its generated configuration table."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_configuration_reference_matches_the_code():
    run = subprocess.run([sys.executable, os.path.join(REPO, "docs", "update_readme.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)```", readme(), flags=re.S)
    main_job, tests = blocks[0], blocks[1]
    assert "pip install -e ." in main_job and "samples/shapes/train_shapes.py" in main_job
    test_command = "python -m pytest -q"
    assert 'pip install -e ".[test]"' in tests and test_command in tests
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert test_command in ci and 'pip install --quiet -e ".[test]"' in ci
    assert os.path.isfile(os.path.join(REPO, "samples", "shapes", "train_shapes.py"))
