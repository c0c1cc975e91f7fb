"""``tools/bench.py`` arguments: counts that would divide by zero are refused up front."""

from __future__ import annotations

import pytest

from enhancer.commands.bench import main as bench_main


@pytest.mark.parametrize(("argv", "message"), [
    (["--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["--repeats", "-2"], "--repeats must be at least 1, got -2"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
])
def test_zero_repeats_or_steps_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench_main([*argv, "--resolutions", "480p"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
