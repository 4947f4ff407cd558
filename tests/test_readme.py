"""The README's Python example runs as written."""
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no Python example"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)


def test_readme_results_are_the_benchmark_outputs():
    """Every results block in the README is exactly what render_readme.py pastes from results/."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("render_readme", ROOT / "benchmarks" / "render_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    assert readme.count("<!-- results:") >= 6
    assert module.render(readme, ROOT / "results") == readme, "run python benchmarks/render_readme.py"


def test_readme_quick_start_gives_the_array_back(tmp_path):
    """The quick start's serecodec commands, run as written (after the install), in a copy of examples/."""
    import shlex
    import shutil
    import subprocess
    import sys

    import numpy as np
    readme = (ROOT / "README.md").read_text()
    line = re.search(r"## Quick start.*?```sh\n(.*?)\n```", readme, flags=re.S).group(1)
    commands = [c for c in line.split(" && ") if c.startswith("serecodec ")]
    assert len(commands) == 3
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for command in commands:
        args = shlex.split(command)[1:]
        proc = subprocess.run([sys.executable, "-m", "serecodec", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    given, back = np.load(ROOT / "examples" / "digits.npy"), np.load(tmp_path / "digits_out.npy")
    assert back.dtype == given.dtype and np.array_equal(back, given)
