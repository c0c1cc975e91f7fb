"""Console scripts and tools/*.py run the same ``main`` of :mod:`enhancer.commands`."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import tomllib

from conftest import REPO


def test_console_scripts_are_the_tools_mains():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"enhancer-eval", "enhancer-train", "enhancer-codec", "enhancer-bench"} <= set(scripts)
    for target in scripts.values():
        module_name, function = target.split(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function))
        tool = REPO / "tools" / f"{module_name.rsplit('.', 1)[1]}.py"
        spec = importlib.util.spec_from_file_location(f"tool_{tool.stem}", tool)
        wrapper = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(wrapper)
        assert wrapper.main is module.main


def test_a_tool_prints_its_help_with_the_commands_docstring():
    result = subprocess.run([sys.executable, str(REPO / "tools" / "tune_sampling.py"), "--help"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0
    assert "Choose an enhancer's default sampling" in result.stdout
