"""Console scripts and tools/*.py run the same ``main`` of :mod:`enhancer.commands`."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import pytest
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
                            check=False, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0
    assert "Choose an enhancer's default sampling" in result.stdout
    assert "FutureWarning" not in result.stderr and "deprecated" not in result.stderr


def _failing_main(argv: list[str] | None) -> int:
    from enhancer.cli import ArgumentParser

    parser = ArgumentParser(prog="enhancer-x")
    parser.add_argument("--codec", choices=["x264", "x265", "ssf-small"])
    args = parser.parse_args(argv)
    return {"x264": 0}[args.codec]  # a KeyError for any other codec: an "unexpected" error


def test_an_unexpected_error_is_one_line_unless_debug(capsys):
    from enhancer.cli import run_cli

    assert run_cli(_failing_main, ["--codec", "x265"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unexpected KeyError" in err and "test_commands.py:" in err and "--debug" in err
    assert run_cli(_failing_main, ["--codec", "x265", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "_failing_main" in err


def test_a_mistyped_flag_or_choice_gets_did_you_mean(capsys):


    for argv, hint in ((["--codc", "x264"], "did you mean '--codec'?"),
                       (["--codec", "ssf_small"], "did you mean 'ssf-small'?")):
        with pytest.raises(SystemExit) as exit_info:
            _failing_main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert hint in err and "usage:" not in err
