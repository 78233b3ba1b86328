"""Command line: options, exit codes, dry run, overrides, template writing (stand-in stages)."""

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _fake_stages  # noqa: E402

from tsoreduce import cli, pipeline  # noqa: E402

REPO = Path(__file__).parents[1]


@pytest.fixture
def fake(monkeypatch):
    calls = _fake_stages.install(monkeypatch)
    monkeypatch.setattr(pipeline, "_compare_with_truth", lambda *a, **k: ([], {}))
    return calls


@pytest.fixture
def run_yaml(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("name: c\noutput_dir: out\ninput:\n  simulate: {nints: 4, nsegments: 2}\n")
    return p


def test_dry_run_prints_plan_and_writes_nothing(fake, run_yaml, tmp_path, capsys):
    assert cli.main([str(run_yaml), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Stage 1 detector" in out and "[            run]" in out
    assert not (tmp_path / "out").exists() and fake == {}


def test_run_then_skip_then_start_at_force(fake, run_yaml, tmp_path, capsys):
    assert cli.main([str(run_yaml), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "key numbers" in out and "spectrum.nchannels = 2" in out and "run.log" in out
    assert (tmp_path / "out" / "run.log").exists()
    fake.clear()
    assert cli.main([str(run_yaml), "--no-progress"]) == 0
    assert fake == {} and "skip" in capsys.readouterr().out
    assert cli.main([str(run_yaml), "--start-at", "3", "--force", "--no-progress"]) == 0
    assert fake == {"stage3": 1, "stage4": 1}
    fake.clear()
    assert cli.main([str(run_yaml), "--stages", "2", "--force", "--no-progress"]) == 0
    assert fake == {"stage2": 1}


def test_output_dir_override(fake, run_yaml, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main([str(run_yaml), "--output-dir", "other", "--stages", "1", "-q", "--no-progress"]) == 0
    assert (tmp_path / "other" / "stage1" / ".done.json").exists()
    assert not (tmp_path / "out").exists()


def test_exit_codes(fake, run_yaml, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {simulate: {}}\nstage1: {drop_groups: 99}\n")
    assert cli.main([str(bad)]) == 2
    assert "stage1.drop_groups: 99 is above the maximum 10" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing.yaml")]) == 2
    assert cli.main([str(run_yaml), "--stages", "1", "--no-progress"]) == 0
    run_yaml.write_text(run_yaml.read_text() + "stage1: {drop_groups: 2}\n")
    assert cli.main([str(run_yaml), "--stages", "1", "--no-progress"]) == 3
    assert "tsoreduce: error: OverwriteError:" in capsys.readouterr().err
    assert cli.main([str(run_yaml), "--stages", "1", "--force", "--no-progress"]) == 0
    with pytest.raises(SystemExit):
        cli.main([str(run_yaml), "--stages", "1", "--start-at", "2"])  # mutually exclusive


def test_write_template(fake, tmp_path, capsys):
    assert cli.main(["--write-template", str(tmp_path / "t.yaml")]) == 0
    assert "drop_groups: 1  # groups dropped at the start" in (tmp_path / "t.yaml").read_text()
    assert cli.main(["--write-template", "-"]) == 0
    assert "input:" in capsys.readouterr().out


def test_run_tso_script_and_console_entry():
    r = subprocess.run([sys.executable, str(REPO / "run_tso.py"), "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--start-at" in r.stdout and "--dry-run" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tsoreduce.cli", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "tsoreduce" in r.stdout


def test_readme_first_commands_and_ci_agree():
    """README's first two commands are the demo and the test suite, and .ci/run runs the same test
    command after the same install."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    cmds = [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert cmds[0] == "python -m pip install -e . && python run_tso.py runs/demo.yaml"
    assert cmds[1] == 'python -m pip install -e ".[test]" && python -m pytest -q -p no:cacheprovider'
    ci = (REPO / ".ci" / "run").read_text()
    install, test = cmds[1].split(" && ")
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert any(line.replace("--quiet ", "") == install for line in ci_lines), ci
    assert test in ci_lines
    assert (REPO / "runs" / "demo.yaml").exists() and (REPO / "run_tso.py").exists()


def test_readme_what_can_go_wrong_is_generated_from_the_errors():
    from tsoreduce.errors import render_failure_table
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- BEGIN what-can-go-wrong")
    body = readme[readme.index("\n", start) + 1:readme.index("<!-- END what-can-go-wrong -->")]
    assert body == render_failure_table(), (
        "README 'What can go wrong' is stale: paste the output of `python -m tsoreduce.errors`")
    for status in (0, 1, 2, 3, 4, 5, 130):
        assert f"\n| {status} |" in body


def test_summary_printed_once_with_stdout_and_stderr_together(fake, run_yaml, capsys):
    assert cli.main([str(run_yaml), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    both = out + err
    assert both.count("key numbers:") == 1 and both.count(" run 'c' -> ") == 1, both
    assert "summary:" not in err  # the log's copy goes to run.log only


def test_dry_run_prints_plan_with_conflict_marked(fake, run_yaml, tmp_path, capsys):
    assert cli.main([str(run_yaml), "--stages", "1-2", "--no-progress", "-q"]) == 0
    run_yaml.write_text(run_yaml.read_text() + "stage2: {background: {skip: true}}\n")
    capsys.readouterr()
    fake.clear()
    assert cli.main([str(run_yaml), "--dry-run"]) == 3
    out, err = capsys.readouterr()
    assert "[           skip] Stage 1" in out and "[       CONFLICT] Stage 2" in out
    assert "[            run] Stage 3" in out and "tsoreduce: error:" in err and fake == {}


def test_errors_are_one_line_with_their_name(fake, run_yaml, tmp_path, capsys, monkeypatch):
    from tsoreduce.errors import OutputWriteError
    import errno

    def full(*a, **k):
        raise OutputWriteError(tmp_path / "out" / "x.fits", errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pipeline, "_run_locked", full)
    assert cli.main([str(run_yaml), "--no-progress"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tsoreduce: error: OutputWriteError: cannot write {tmp_path / 'out' / 'x.fits'}: "
                   f"No space left on device (errno 28 ENOSPC)"]
