"""No input makes simtopo write or delete outside the folder the user named, or read files
outside the named files' folders (and the working folder) unless the user allows more."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import yaml

import simtopo
from simtopo import ConfigError
from simtopo.analysis.executors import sweep
from simtopo.cli import main
from simtopo.io.atomic import write_directory_atomic, write_text_atomic

from .conftest import ROOT

EXPERIMENT = {"name": "small", "topology": str(ROOT / "topologies" / "ultra4-direct.yaml"),
              "model": "llama-2-7b",
              "workload": {"batch": 1, "prompt": 64, "generate": 4, "context": 256},
              "plan": {"tp": 1, "connection": "p2p"}, "variants": [{"name": "a"}]}


@pytest.fixture(autouse=True)
def _inside_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMTOPO_PATHS", str(ROOT / "topologies"))


def experiment(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({**EXPERIMENT, **changes}))
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("name", [".", "..", "../x", "/tmp/x", "a/b", "a\nb", "a\0b", "",
                                  "-rf", "x" * 101])
def test_a_name_that_is_not_a_plain_name_is_refused_and_nothing_moves(tmp_path, capsys,
                                                                      name):
    keep = tmp_path / "reports" / "baselines" / "keep.json"
    keep.parent.mkdir(parents=True)
    keep.write_text("{}")
    path = experiment(tmp_path, name=name)
    before = tree(tmp_path)
    assert main(["run", str(path), "--reports", "reports"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "e.yaml:2: name: names are letters, digits" in err
    assert tree(tmp_path) == before


def test_the_report_goes_to_the_named_folder_and_never_replaces_a_foreign_one(tmp_path,
                                                                              capsys):
    path = experiment(tmp_path)
    foreign = tmp_path / "reports" / "small" / "thesis.tex"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("mine")
    assert main(["run", str(path), "--reports", "reports"]) == 2
    assert capsys.readouterr().err == (
        "error: reports/small holds files simtopo did not write: refusing to replace it "
        "(choose another folder, or empty it)\n")
    assert foreign.read_text() == "mine"
    # a report folder simtopo wrote is replaced
    assert main(["run", str(path), "--reports", "elsewhere"]) == 0
    assert main(["run", str(path), "--reports", "elsewhere"]) == 0
    assert (tmp_path / "elsewhere" / "small" / "summary.json").is_file()


def test_a_symlinked_report_folder_is_refused(tmp_path, capsys):
    (tmp_path / "target").mkdir()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "small").symlink_to(tmp_path / "target")
    assert main(["run", str(experiment(tmp_path)), "--reports", "reports"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert list((tmp_path / "target").iterdir()) == []


def test_an_include_outside_the_allowed_folders_is_refused_without_echoing_it(tmp_path,
                                                                               monkeypatch):
    monkeypatch.delenv("SIMTOPO_PATHS")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.yaml"
    outside.write_text("root:x:0:0:secret\n")
    inside = tmp_path / "sub"
    inside.mkdir()
    (inside / "t.yaml").write_text(f"name: t\ninclude: [{outside}]\n")
    monkeypatch.chdir(inside)
    try:
        with pytest.raises(ConfigError) as info:
            simtopo.load_topology("t.yaml")
        message = str(info.value)
        assert message == (f"t.yaml:2: include[0]: '{outside}' lies outside the topology's "
                           "folder and the working folder (allow more folders with "
                           "SIMTOPO_PATHS)")
        # allowed, it is read; its content (a string) is described, not echoed
        monkeypatch.setenv("SIMTOPO_PATHS", str(tmp_path.parent))
        with pytest.raises(ConfigError) as info:
            simtopo.load_topology("t.yaml")
        assert "secret" not in str(info.value) and "root:x" not in str(info.value)
        assert "a string of 17 characters" in str(info.value)
    finally:
        outside.unlink()


def test_a_relative_include_climbing_out_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.yaml").write_text("name: t\ninclude: [../../../../../etc/passwd]\n")
    with pytest.raises(ConfigError, match="lies outside the topology's folder"):
        simtopo.load_topology(tmp_path / "sub" / "t.yaml")


def test_a_swept_file_that_is_not_a_topology_is_not_copied_into_the_table(tmp_path, capsys):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:secret\n")
    code = main(["sweep", str(experiment(tmp_path)), "--set", f"topology={secret}", "--out",
                 "out", "--executor", "serial"])
    assert code == 1
    assert capsys.readouterr().err.endswith("error: every point failed (see above)\n")
    table = (tmp_path / "out" / "sweep.csv").read_text()
    assert "passwd:1: expected a mapping of keys to values (got a string of 17 characters)" \
        in table
    assert "secret" not in table and "root:x" not in table
    assert "secret" not in (tmp_path / "out" / "points.jsonl").read_text()


@pytest.mark.parametrize("kind", ["symlink", "device", "folder", "empty"])
def test_outputs_never_replace_links_devices_or_folders(tmp_path, capsys, kind):
    target = tmp_path / "real.png"
    target.write_bytes(b"precious")
    out = {"symlink": tmp_path / "link.png", "device": tmp_path / "fifo.png",
           "folder": tmp_path / "dir.png", "empty": Path("")}[kind]
    if kind == "symlink":
        out.symlink_to(target)
    if kind == "device":
        os.mkfifo(out)  # a special file, as /dev/full would be (without being root)
    if kind == "folder":
        out.mkdir()
    assert main(["topo", "draw", str(ROOT / "topologies" / "ultra8.yaml"), "-o",
                 "" if kind == "empty" else str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert {"symlink": "is a symbolic link", "device": "is a device or special file",
            "folder": "is a folder", "empty": "an output path is empty"}[kind] in err
    assert target.read_bytes() == b"precious"
    if kind == "symlink":
        assert out.is_symlink()


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max (4,194,304): never a live process
    assert not Path(f"/proc/{dead}").exists()
    stale_dir = tmp_path / f".report.tmp.{dead}.abc"
    stale_dir.mkdir()
    (stale_dir / "half.png").write_bytes(b"x")
    stale_file = tmp_path / f".out.json.tmp.{dead}.xyz"
    stale_file.write_text("half")
    live = tmp_path / f".report.tmp.{os.getpid()}.keep"  # a live writer's: left alone
    live.mkdir()
    write_directory_atomic(tmp_path / "report", lambda d: (d / "a.txt").write_text("a"))
    write_text_atomic(tmp_path / "out.json", "{}")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["report", "out.json", live.name])


def test_a_python_sweep_refuses_a_folder_of_another_experiment(tmp_path):
    first = experiment(tmp_path)
    result = sweep(first, {"plan.tp": [1]}, folder="out", executor="serial", figures=False)
    assert repr(result) == "SweepResult(small: 1 points (1 computed, 0 reused): out/sweep.csv)"
    other = tmp_path / "other.yaml"
    other.write_text(first.read_text().replace("name: small", "name: other"))
    with pytest.raises(ConfigError) as info:
        sweep(other, {"plan.tp": [1]}, folder="out", executor="serial", figures=False)
    assert str(info.value) == (f"out: this folder holds a sweep of {first}, not of other.yaml: "
                               "give --out (folder=) another folder")
    again = sweep(first, {"plan.tp": [1]}, folder="out", executor="serial", figures=False)
    assert (again.computed, again.reused) == (0, 1)


def test_two_sweeps_into_one_folder_at_once(tmp_path):
    path = experiment(tmp_path)
    from simtopo.analysis.sweep_log import Log

    held = Log(tmp_path / "out", path)  # a sweep in progress holds the folder
    try:
        errors = []

        def second() -> None:
            try:
                sweep(path, {"plan.tp": [1]}, folder="out", executor="serial", figures=False)
            except ConfigError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(60)
        assert errors == ["out: another sweep is writing here now: wait for it, or give --out "
                          "another folder"]
    finally:
        held.close()


@pytest.mark.parametrize(("second", "message"), [
    ("a", "duplicate variant name 'a'"),
    ("A", "duplicate variant name 'A' (as 'a', up to case)"),
])
def test_variant_names_that_would_share_figure_files_are_refused(tmp_path, capsys, second,
                                                                   message):
    path = experiment(tmp_path, variants=[{"name": "a"}, {"name": second}])
    assert main(["run", str(path), "--no-report"]) == 2
    assert capsys.readouterr().err == f"error: e.yaml:9: variants[1].name: {message}\n"


def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    import errno

    from simtopo.report import draw

    def full(fig, path, dpi=130):
        def write(handle):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return draw.write_atomic(path, write)

    monkeypatch.setattr(draw, "save_figure", full)
    assert main(["topo", "draw", str(ROOT / "topologies" / "ultra8.yaml"), "-o",
                 "t.png"]) == 2
    assert capsys.readouterr().err == "error: cannot write t.png (No space left on device)\n"
    assert list(tmp_path.iterdir()) == []
