#!/usr/bin/env bash
# sim_load.sh: didww-sim start-up time against the size of its state file.
#
# Generates two state files (SMALL and LARGE DIDs, default 12,000 and 40,000, with 200
# trunks and 40 groups of 5, every tenth DID on a trunk and every tenth on a group),
# starts build/didww-sim on each RUNS times and takes the best time from exec to its
# "listening" line. Prints both times and the ratio LARGE/SMALL: linear loading gives
# about LARGE/SMALL (3.3 with the defaults), quadratic about its square (11).
# Environment: SMALL [12000], LARGE [40000], RUNS [3], SIM [build/didww-sim].
# Exit: 0 when both loads completed (the ratio is a measurement, not a gate), 1 otherwise.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
SIM=${SIM:-$REPO/build/didww-sim}
SMALL=${SMALL:-12000}
LARGE=${LARGE:-40000}
RUNS=${RUNS:-3}

if [ ! -x "$SIM" ]; then
    cmake -S "$REPO" -B "$REPO/build" >/dev/null
    cmake --build "$REPO/build" --target didww-sim >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$tmp" "$SMALL" "$LARGE" <<'PY'
import json, sys, uuid
out, sizes = sys.argv[1], [int(x) for x in sys.argv[2:]]
def uid(kind, i):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sim-load/{kind}/{i}"))
trunks = [{"id": uid("t", i), "name": f"Trunk {i}"} for i in range(200)]
groups = [{"id": uid("g", g), "name": f"Group {g}", "trunks": [uid("t", g * 5 + k) for k in range(5)]}
          for g in range(40)]
for n in sizes:
    dids = []
    for i in range(n):
        d = {"id": uid("d", i), "number": str(43720000000 + i), "capacity_limit": i % 100}
        if i % 10 == 1:
            d["trunk"] = uid("t", i % 200)
        elif i % 10 == 2:
            d["trunk_group"] = uid("g", i % 40)
        dids.append(d)
    with open(f"{out}/state_{n}.json", "w") as f:
        json.dump({"dids": dids, "trunks": trunks, "trunk_groups": groups}, f)
PY

# Best of RUNS: seconds from exec to the "listening" line.
load_time() {
    python3 - "$SIM" "$1" "$RUNS" <<'PY'
import subprocess, sys, time
sim, state, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
best = None
for _ in range(runs):
    t0 = time.monotonic()
    p = subprocess.Popen([sim, "--state", state, "--api-key", "bench-key", "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    dt = time.monotonic() - t0
    p.terminate()
    p.wait(timeout=30)
    if "listening" not in line:
        sys.exit(f"didww-sim did not start on {state}: {p.stderr.read().strip()}")
    best = dt if best is None else min(best, dt)
print(f"{best:.3f}")
PY
}

t_small=$(load_time "$tmp/state_$SMALL.json")
t_large=$(load_time "$tmp/state_$LARGE.json")
python3 - "$SMALL" "$LARGE" "$t_small" "$t_large" <<'PY'
import sys
small, large, ts, tl = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"didww-sim load: {small} DIDs {ts:.3f} s, {large} DIDs {tl:.3f} s")
print(f"ratio {large}/{small}: {tl / ts:.2f} (linear ~{large / small:.1f}, quadratic ~{(large / small) ** 2:.1f})")
PY
