#!/usr/bin/env python3
"""Time a relay restart on a data directory: from exec to "listening" (it accepts hello from
then on), and its resident memory one second later. Usage:

    scripts/bench-restart.py target/release/tally-relay target/history-10000000 [serve flags…]
"""
import os
import re
import subprocess
import sys
import time

binary, data = sys.argv[1], sys.argv[2]
started = time.time()
relay = subprocess.Popen(
    [binary, "--data", data, "serve", "--listen", "127.0.0.1:0", "--static", "/nonexistent",
     "--durability", "normal"] + sys.argv[3:],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, RUST_LOG="info"))
relay.stdout.readline()
ready = time.time() - started
time.sleep(1.0)
with open(f"/proc/{relay.pid}/status") as status:
    rss_kib = next(int(l.split()[1]) for l in status if l.startswith("VmRSS"))
relay.terminate()
relay.wait()
print(f"ready in {ready:.2f} s, RSS after 1 s {rss_kib / 1024:.0f} MiB")
for line in re.sub(r"\x1b\[[0-9;]*m", "", relay.stderr.read().decode()).splitlines():
    if "replayed" in line or "checkpoint" in line:
        print("  ", line)
