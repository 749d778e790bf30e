"""Drives a command in a pseudo-terminal, as a human at a keyboard would.

Usage: python3 terminal.py SCRIPT_JSON CMD [ARGS...]
SCRIPT_JSON is a list of [wait_for, send]: wait until `wait_for` appears in the output, then
type `send`. Prints {"code": exit code, "transcript": everything the terminal showed} as JSON.
"""
import json
import os
import pty
import select
import sys
import time

script = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])

transcript = b""


def read_some(timeout):
    global transcript
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return False
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    if not data:
        return None
    transcript += data
    return True


for wait_for, send in script:
    deadline = time.time() + 20
    while wait_for.encode() not in transcript and time.time() < deadline:
        if read_some(0.2) is None:
            break
    time.sleep(0.05)
    os.write(fd, send.encode())

deadline = time.time() + 30
while time.time() < deadline:
    if read_some(0.2) is None:
        break
_, status = os.waitpid(pid, 0)
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
print(json.dumps({"code": code, "transcript": transcript.decode("utf-8", "replace")}))
