"""Tests of actors/conflicts.py: write paths of tool calls, canonical paths, the conflict index."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from corral.actors.conflicts import (
    MAX_PATHS_PER_SESSION,
    MAX_SESSIONS_PER_PATH,
    ConflictIndex,
    bash_write_paths,
    canonical_path,
    write_paths,
)

CWD = "/srv/proj"


def bash(command: str, cwd: str = CWD) -> list[str]:
    return bash_write_paths(command, cwd)


# -- file tools ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tool_input", "expected"),
    [
        ("Write", {"file_path": "/srv/proj/a.py", "content": "x"}, ["/srv/proj/a.py"]),
        (
            "Edit",
            {"file_path": "src/a.py", "old_string": "a", "new_string": "b"},
            ["/srv/proj/src/a.py"],
        ),
        ("MultiEdit", {"file_path": "/srv/proj/b.py", "edits": []}, ["/srv/proj/b.py"]),
        ("NotebookEdit", {"notebook_path": "nb.ipynb", "new_source": ""}, ["/srv/proj/nb.ipynb"]),
        # codex file changes: add -> Write, delete -> Delete, update/move -> Edit
        ("Delete", {"file_path": "/srv/proj/old.py"}, ["/srv/proj/old.py"]),
        (
            "Edit",
            {"file_path": "/srv/proj/a.py", "diff": "", "new_path": "/srv/proj/b.py"},
            ["/srv/proj/a.py", "/srv/proj/b.py"],
        ),
        (
            "apply_patch",
            {
                "input": "*** Begin Patch\n*** Add File: hello.txt\n+hi\n"
                "*** Update File: src/m.py\n*** Move to: src/n.py\n@@\n-a\n+b\n"
                "*** Delete File: gone.txt\n*** End Patch\n"
            },
            [
                "/srv/proj/hello.txt",
                "/srv/proj/src/m.py",
                "/srv/proj/src/n.py",
                "/srv/proj/gone.txt",
            ],
        ),
        ("Bash", {"command": "echo x > notes.md"}, ["/srv/proj/notes.md"]),
    ],
)
def test_write_tools(name: str, tool_input: dict[str, Any], expected: list[str]) -> None:
    assert write_paths(name, tool_input, CWD) == expected


@pytest.mark.parametrize(
    ("name", "tool_input"),
    [
        ("Read", {"file_path": "/srv/proj/a.py"}),
        ("Grep", {"pattern": "x", "path": "/srv/proj"}),
        ("Glob", {"pattern": "**/*.py"}),
        ("Write", {"content": "no path"}),
        ("Write", {"file_path": 42}),
        ("Write", {"file_path": ""}),
        ("Write", {"file_path": "a\x00b"}),
        ("Bash", {"command": ["not", "a", "string"]}),
        ("Bash", {}),
        (None, {"file_path": "/x"}),
    ],
)
def test_not_writes(name: str | None, tool_input: dict[str, Any]) -> None:
    assert write_paths(name, tool_input, CWD) == []


def test_write_tools_input_not_a_mapping() -> None:
    assert write_paths("Write", None, CWD) == []


# -- Bash ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        # redirections
        ("echo x > notes.md", ["notes.md"]),
        ("echo x >> log.txt", ["log.txt"]),
        ("echo x>out.txt", ["out.txt"]),
        ("echo x >| clobber.txt", ["clobber.txt"]),
        ("make 2> err.log", ["err.log"]),
        ("make 2>>err.log", ["err.log"]),
        ("make &> all.log", ["all.log"]),
        ("make &>> all.log", ["all.log"]),
        ("make >& both.log", ["both.log"]),
        ("make > out.log 2>&1", ["out.log"]),
        ("echo x 1>&2", []),
        ("make 2>/dev/null", []),
        ("echo x > /dev/stderr", []),
        ("sort < in.txt", []),
        ("cat <<< 'here string' > o.txt", ["o.txt"]),
        ("echo 'a > b' \"c > d\" > real.txt", ["real.txt"]),
        ("echo \\> e.txt", []),
        ("grep '>' seqs.fa", []),
        ("echo x > 'my file.txt'", ["my file.txt"]),
        # tee
        ("echo x | tee out.txt", ["out.txt"]),
        ("echo x | tee -a one.txt two.txt", ["one.txt", "two.txt"]),
        ("echo x | tee -", []),
        ("echo x | tee /dev/null", []),
        ("echo x | sudo tee /etc/hosts", ["/etc/hosts"]),
        # sed -i
        ("sed -i 's/a/b/' f.py", ["f.py"]),
        ("sed -i.bak -e 's/a/b/' -e 's/c/d/' f.py g.py", ["f.py", "g.py"]),
        ("sed -Ei 's/a/b/' f.py", ["f.py"]),
        ("sed --in-place=.orig 's/a/b/' f.py", ["f.py"]),
        ("sed -i '' 's/a/b/' bsd.py", ["bsd.py"]),
        ("sed -i -f script.sed f.py", ["f.py"]),
        ("sed 's/a/b/' f.py > g.py", ["g.py"]),
        ("sed -n 's/a/b/p' f.py", []),
        # touch, rm
        ("touch a.txt b.txt", ["a.txt", "b.txt"]),
        ("touch -d '2020-01-01' c.txt", ["c.txt"]),
        ("rm -rf build dist", ["build", "dist"]),
        ("rm -- -weird", ["-weird"]),
        ("rm -f *.pyc", []),
        ("rm $TMPFILE", []),
        # cp, mv
        ("cp a.py b.py", ["b.py"]),
        ("cp -r src/ backup", ["backup"]),
        ("mv old.py new.py", ["old.py", "new.py"]),
        ("cp -t dest a.py b.py", ["dest/a.py", "dest/b.py"]),
        ("cp a.py b.py dest", ["dest/a.py", "dest/b.py"]),
        ("cp onlyone", []),
        # chains
        ("mkdir -p out && echo x > out/a.txt", ["out/a.txt"]),
        ("false || touch fallback.txt", ["fallback.txt"]),
        ("touch one; touch two", ["one", "two"]),
        ("touch one\ntouch two", ["one", "two"]),
        ("make & touch bg.txt", ["bg.txt"]),
        ("cat x | sort | tee sorted.txt > /dev/null", ["sorted.txt"]),
        ("ls -la", []),
        ("git commit -m 'touch > x; rm y'", []),
        # assignments and wrappers
        ("FOO=1 BAR=2 touch env.txt", ["env.txt"]),
        ("env -i PATH=/bin touch e2.txt", ["e2.txt"]),
        ("sudo -u bob rm /tmp/owned", ["/tmp/owned"]),
        ("nohup /usr/bin/touch n.txt", ["n.txt"]),
        # cd moves relative paths; parentheses restore it
        ("cd sub && touch a.txt", ["sub/a.txt"]),
        ("(cd sub && touch a.txt); touch b.txt", ["sub/a.txt", "b.txt"]),
        ("cd /abs/dir; echo x > f.txt", ["/abs/dir/f.txt"]),
        ("cd $HOME && touch lost.txt && touch /abs/kept.txt", ["/abs/kept.txt"]),
        ("cd - && touch lost.txt", []),
        # comments and heredocs
        ("touch real.txt # > not.txt", ["real.txt"]),
        ("echo a#b > hash.txt", ["hash.txt"]),
        (
            "cat > gen.py <<'EOF'\nx = 1 > 2\nrm everything\nEOF\ntouch after.txt",
            ["gen.py", "after.txt"],
        ),
        ("cat <<-EOF > t.txt\n\tbody > no.txt\n\tEOF", ["t.txt"]),
        ("echo $(date) > stamp.txt", ["stamp.txt"]),
        ("echo x > $OUT", []),
        ("echo x > out-{a,b}.txt", []),
        ("echo x > `pick`", []),
        ("echo x >", []),
        # line continuation
        ("touch \\\n  cont.txt", ["cont.txt"]),
        # cannot split: ignored, never guessed
        ("echo 'unbalanced > x.txt", []),
        ("", []),
    ],
)
def test_bash_patterns(command: str, expected: list[str]) -> None:
    assert bash(command) == [os.path.join(CWD, p) for p in expected]


def test_bash_apply_patch_heredoc() -> None:
    command = (
        "apply_patch <<'PATCH'\n*** Begin Patch\n*** Add File: docs/new.md\n+hello > world\n"
        "*** End Patch\nPATCH"
    )
    assert bash(command) == ["/srv/proj/docs/new.md"]


def test_bash_copy_into_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    assert bash_write_paths("cp a.py dest", str(tmp_path)) == [str(tmp_path / "dest" / "a.py")]
    assert bash_write_paths("mv a.py dest/", str(tmp_path)) == [
        str(tmp_path / "a.py"),
        str(tmp_path / "dest" / "a.py"),
    ]


def test_bash_relative_without_cwd_is_ignored() -> None:
    assert bash_write_paths("touch rel.txt /abs/x", None) == ["/abs/x"]


def test_bash_too_long_is_ignored() -> None:
    assert bash("touch a " + "b" * 70000) == []


def test_bash_home() -> None:
    home = os.path.expanduser("~")
    assert bash("echo x > ~/notes.txt") == [os.path.realpath(os.path.join(home, "notes.txt"))]
    assert bash("echo x > ~nosuchuser-corral/notes.txt") == []


# -- canonical paths -------------------------------------------------------


def test_canonical_dotdot_and_relative() -> None:
    assert canonical_path("./src/../src/app.py", CWD) == "/srv/proj/src/app.py"
    assert canonical_path("src//app.py", CWD) == "/srv/proj/src/app.py"
    assert canonical_path("/srv/proj/../proj/src/app.py", "/elsewhere") == "/srv/proj/src/app.py"
    assert canonical_path("src/app.py", "relative/cwd") is None
    assert canonical_path("src/app.py", None) is None
    assert canonical_path("/x" * 3000, CWD) is None


def test_canonical_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "src").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    (real / "src" / "app.py").write_text("")
    (real / "alias.py").symlink_to(real / "src" / "app.py")
    target = str(real / "src" / "app.py")
    assert canonical_path("link/src/app.py", str(tmp_path)) == target
    assert canonical_path("alias.py", str(real)) == target
    # a file that does not exist yet, under a symlinked directory
    assert canonical_path("link/src/new.py", str(tmp_path)) == str(real / "src" / "new.py")
    # the session's cwd itself is a symlink
    assert canonical_path("src/app.py", str(tmp_path / "link")) == target
    assert write_paths("Write", {"file_path": "src/app.py"}, str(tmp_path / "link")) == [target]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_two_worktrees_are_different_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }

    def git(*args: str, cwd: Path = repo) -> None:
        subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=30
        )

    repo.mkdir()
    git("init", "-q")
    (repo / "app.py").write_text("x = 1\n")
    git("add", "app.py")
    git("commit", "-q", "-m", "init")
    git("worktree", "add", "-q", str(tmp_path / "wt"), "-b", "feature")
    main = canonical_path("app.py", str(repo))
    other = canonical_path("app.py", str(tmp_path / "wt"))
    assert main == str(repo / "app.py")
    assert other == str(tmp_path / "wt" / "app.py")
    assert main != other
    index = ConflictIndex()
    assert main is not None and other is not None
    assert index.record_write("s1", "a", main, 1) == []
    assert index.record_write("s2", "b", other, 2) == []
    assert index.list() == []


# -- the index -------------------------------------------------------------

P = "/srv/proj/src/app.py"


def test_first_appearance_one_event_per_project() -> None:
    index = ConflictIndex()
    assert index.record_write("s1", "alpha", P, 100) == []
    events = index.record_write("s2", "beta", P, 200)
    assert [e["projectId"] for e in events] == ["alpha", "beta"]
    for event in events:
        assert event == {
            "projectId": event["projectId"],
            "path": P,
            "sessionIds": ["s1", "s2"],
            "projectIds": ["alpha", "beta"],
            "lastWriteTs": 200,
            "acknowledged": False,
        }
    # later writes by the same sessions: nothing new, but the time moves
    assert index.record_write("s1", "alpha", P, 300) == []
    assert index.record_write("s2", "beta", P, 250) == []
    rows = index.list()
    assert [(r["projectId"], r["lastWriteTs"]) for r in rows] == [("alpha", 300), ("beta", 300)]
    assert index.open_count("alpha") == index.open_count("beta") == 1
    assert index.open_count("gamma") == 0


def test_same_project_two_sessions_one_event() -> None:
    index = ConflictIndex()
    index.record_write("s1", "alpha", P, 1)
    events = index.record_write("s2", "alpha", P, 2)
    assert len(events) == 1 and events[0]["sessionIds"] == ["s1", "s2"]
    assert events[0]["projectIds"] == ["alpha"]
    assert len(index.list()) == 1


def test_a_new_project_joining_gets_its_own_event_only() -> None:
    index = ConflictIndex()
    index.record_write("s1", "alpha", P, 1)
    index.record_write("s2", "beta", P, 2)
    events = index.record_write("s3", "gamma", P, 3)
    assert [e["projectId"] for e in events] == ["gamma"]
    assert events[0]["projectIds"] == ["alpha", "beta", "gamma"]
    # a new session of a project whose row is open: nothing
    assert index.record_write("s4", "alpha", P, 4) == []


def test_other_paths_are_separate() -> None:
    index = ConflictIndex()
    index.record_write("s1", "alpha", P, 1)
    assert index.record_write("s2", "beta", "/other/src/app.py", 2) == []
    assert index.list() == []


def test_list_newest_first_and_by_project() -> None:
    index = ConflictIndex()
    index.record_write("s1", "alpha", "/a", 1)
    index.record_write("s2", "beta", "/a", 2)
    index.record_write("s1", "alpha", "/b", 5)
    index.record_write("s3", "gamma", "/b", 6)
    assert [(r["path"], r["projectId"]) for r in index.list()] == [
        ("/b", "alpha"),
        ("/b", "gamma"),
        ("/a", "alpha"),
        ("/a", "beta"),
    ]
    assert [r["path"] for r in index.list("alpha")] == ["/b", "/a"]
    assert [r["path"] for r in index.list("beta")] == ["/a"]
    assert index.list("nobody") == []


def test_ack_and_reopen() -> None:
    index = ConflictIndex()
    index.record_write("s1", "alpha", P, 1)
    index.record_write("s2", "beta", P, 2)
    assert index.ack("alpha") == 1
    assert index.ack("alpha") == 0
    assert index.open_count("alpha") == 0 and index.open_count("beta") == 1
    assert [r["projectId"] for r in index.list()] == ["beta"]
    # sessions that had written it before: stays acknowledged
    assert index.record_write("s1", "alpha", P, 3) == []
    assert index.record_write("s2", "beta", P, 4) == []
    assert index.open_count("alpha") == 0
    # a session new to the file reopens the acknowledged row (beta's is still open)
    events = index.record_write("s3", "beta", P, 5)
    assert [e["projectId"] for e in events] == ["alpha"]
    assert events[0]["acknowledged"] is False
    assert events[0]["sessionIds"] == ["s1", "s2", "s3"]
    assert index.open_count("alpha") == 1
    # both acknowledge; a new session reopens both rows, one event each
    assert index.ack("alpha") == 1 and index.ack("beta") == 1
    assert index.list() == []
    events = index.record_write("s4", "delta", P, 6)
    assert sorted(e["projectId"] for e in events) == ["alpha", "beta", "delta"]


def test_forget_session_dissolves_conflicts() -> None:
    index = ConflictIndex()
    index.record_write("s1", "alpha", P, 1)
    index.record_write("s2", "beta", P, 2)
    index.record_write("s3", "gamma", P, 3)
    assert index.forget_session("s3") == ["gamma"]
    assert sorted(r["projectId"] for r in index.list()) == ["alpha", "beta"]
    assert index.list()[0]["sessionIds"] == ["s1", "s2"]
    assert index.forget_session("s2") == ["alpha", "beta"]
    assert index.list() == [] and index.open_count("alpha") == 0
    assert index.forget_session("s2") == []
    assert index.forget_session("never-seen") == []
    # the remaining writer and a new one: a first appearance again
    events = index.record_write("s5", "beta", P, 9)
    assert sorted(e["projectId"] for e in events) == ["alpha", "beta"]


def test_forgotten_acknowledged_conflict_appears_anew() -> None:
    index = ConflictIndex()
    index.record_write("s1", "alpha", P, 1)
    index.record_write("s2", "beta", P, 2)
    index.ack("alpha")
    index.ack("beta")
    index.forget_session("s2")
    events = index.record_write("s2b", "beta", P, 3)
    assert sorted(e["projectId"] for e in events) == ["alpha", "beta"]


def test_paths_per_session_bound() -> None:
    assert MAX_PATHS_PER_SESSION == 2000
    index = ConflictIndex(max_paths_per_session=3)
    for i in range(3):
        index.record_write("s1", "alpha", f"/f{i}", i)
    index.record_write("s2", "beta", "/f0", 10)
    assert len(index.list()) == 2
    index.record_write("s1", "alpha", "/f1", 11)  # rewriting keeps /f1 recent
    index.record_write("s1", "alpha", "/f3", 12)  # the 4th path: /f0 (least recent) is forgotten
    assert index.paths_of("s1") == ["/f2", "/f1", "/f3"]
    assert index.list() == []
    # /f1 is still remembered: a conflict on it appears
    assert [e["projectId"] for e in index.record_write("s2", "beta", "/f1", 13)] == [
        "alpha",
        "beta",
    ]


def test_sessions_per_path_bound() -> None:
    assert MAX_SESSIONS_PER_PATH == 32
    index = ConflictIndex(max_sessions_per_path=3)
    index.record_write("s1", "a", P, 1)
    index.record_write("s2", "b", P, 2)
    index.record_write("s3", "c", P, 3)
    assert index.record_write("s4", "d", P, 4) == []
    assert index.list("d") == []
    assert index.list("a")[0]["sessionIds"] == ["s1", "s2", "s3"]
    assert index.paths_of("s4") == []
    # a freed place is taken again
    index.forget_session("s3")
    assert [e["projectId"] for e in index.record_write("s4", "d", P, 5)] == ["d"]


def test_default_bounds_hold() -> None:
    index = ConflictIndex()
    for i in range(MAX_PATHS_PER_SESSION + 50):
        index.record_write("s1", "a", f"/p{i}", i)
    assert len(index.paths_of("s1")) == MAX_PATHS_PER_SESSION
    for i in range(MAX_SESSIONS_PER_PATH + 5):
        index.record_write(f"w{i}", "b", "/shared", i)
    assert len(index.list("b")[0]["sessionIds"]) == MAX_SESSIONS_PER_PATH


def test_bad_limits_refused() -> None:
    with pytest.raises(ValueError):
        ConflictIndex(max_paths_per_session=0)
    with pytest.raises(ValueError):
        ConflictIndex(max_sessions_per_path=1)


def test_end_to_end_bash_against_edit(tmp_path: Path) -> None:
    """``echo x > notes.md`` and an Edit of ``./notes.md`` through a symlinked cwd conflict."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "proj")
    index = ConflictIndex()
    events: list[dict[str, Any]] = []
    for session, project, cwd, name, tool_input in [
        ("s1", "one", str(tmp_path / "proj"), "Bash", {"command": "echo x > notes.md"}),
        ("s2", "two", str(tmp_path / "via"), "Edit", {"file_path": "./sub/../notes.md"}),
    ]:
        for path in write_paths(name, tool_input, cwd):
            events += index.record_write(session, project, path, 1)
    assert [e["path"] for e in events] == [str(tmp_path / "proj" / "notes.md")] * 2
