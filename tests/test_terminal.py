"""What the `runbook` command writes to an operator's terminal: text from records (which anyone
with disk access can edit) is shown, never obeyed, and a reader that went away (`| head -1`, a
closed terminal) is no error. Each through the installed command, as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import RUNBOOK_COMMAND, run_cli
from test_index import write_manifest

#: What a tampered record may hold to act on a terminal: CSI sequences (erase screen, cursor up),
#: an OSC title ended by BEL, a carriage return that overwrites the line, C1's CSI (U+009B),
#: a bidi override that reverses what follows, DEL, a line separator, a newline that fakes a line.
HOSTILE = "ok\x1b[2J\x1b[1A\x1b]0;owned\x07\rforged\x9b2K\u202edesrever\x7f\u2028\nverify: ok: forged"
RAW = ("\x1b", "\x07", "\r", "\x9b", "\u202e", "\x7f", "\u2028")


def test_shown_escapes_every_control_and_keeps_layout_only_when_asked():
    from hotdash_release.execution.terminal import shown

    text = shown(HOSTILE)
    assert not any(c in text for c in (*RAW, "\n"))
    for escape in ("\\x1b[2J", "\\x07", "\\r", "\\x9b", "\\u202e", "\\x7f", "\\u2028", "\\n"):
        assert escape in text
    assert shown("a\tb\nc", keep_layout=True) == "a\tb\nc" and shown("a\tb\nc") == "a\\tb\\nc"
    assert shown("déjà vu ▲") == "déjà vu ▲"  # printable text is left as it is


def test_history_shows_a_tampered_reason_and_ids_escaped_on_one_line(tmp_path):
    manifest = write_manifest(tmp_path, "20261125T190512Z-a1b2c3", outcome="aborted")
    record = json.loads(manifest.read_text())
    record["reason"] = HOSTILE
    manifest.write_text(json.dumps(record))
    done = run_cli("history", "--outputs", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not any(c in done.stdout for c in RAW), repr(done.stdout)
    why = [line for line in done.stdout.splitlines() if "why:" in line]
    assert len(why) == 1 and "\\x1b[2J" in why[0] and "\\u202e" in why[0] and "\\nverify: ok: forged" in why[0]
    assert not any(line.startswith("verify: ok") for line in done.stdout.splitlines())


def test_verify_shows_a_planted_folder_name_escaped(tmp_path):
    """Not a field of a record but a name found on disk: the command's output guard escapes it."""
    write_manifest(tmp_path, "20261125T190512Z-a1b2c3", app="evil\x1b[2J\x1b]0;owned\x07\u202e")
    done = run_cli("verify", "--outputs", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert not any(c in done.stdout + done.stderr for c in RAW), repr(done.stdout)
    assert "evil\\x1b[2J\\x1b]0;owned\\x07\\u202e" in done.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [(("verify",), 1), (("history", "--limit", "0"), 0), (("index",), 0)],
    ids=["verify", "history", "index"],
)
def test_a_closed_pipe_ends_the_command_quietly_with_its_own_exit_code(tmp_path, args, code):
    """`runbook verify | head -1` once the reader has gone: no BrokenPipeError traceback, no
    'Exception ignored' at exit; the command's own exit code (verify fails here: exit 1)."""
    for n in range(30):  # enough lines for history to write after the reader is gone
        write_manifest(tmp_path, f"20261125T1905{n:02d}Z-a1b2c3")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before the first line: every write meets EPIPE
    try:
        done = subprocess.run(
            [*RUNBOOK_COMMAND, args[0], "--outputs", str(tmp_path), *args[1:]],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr
    assert done.returncode == code


def test_the_guard_drops_writes_after_the_reader_went_away_and_keeps_the_command_going():
    """In one process: a write to a closed pipe marks the stream gone; the next writes and the
    interpreter's flush at exit go nowhere; what follows the write still runs."""
    script = (  # the module is imported in the child only
        "import sys\n"
        "from hotdash_release.execution.terminal import guarded_output\n"
        "with guarded_output():\n"
        "    for n in range(20000):\n"
        "        print('line', n)\n"
        "    sys.stdout.flush()\n"
        "open(sys.argv[1], 'w').write('finished')\n"
    )
    marker = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"guard-{os.getpid()}")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, marker], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write_end)
    try:
        assert done.stderr == "" and done.returncode == 0, done.stderr
        assert open(marker).read() == "finished"
    finally:
        os.unlink(marker)
