#!/usr/bin/env python3
"""Scripted hook for the AWS IoT Jobs scenarios (upparat's hook protocol).

Called through a small wrapper per hook that run_scenario.py writes:

    hook.py <state-dir> <hook-name> <args the agent passed...>

upparat passes $1 = seconds since the first call of this hook run,
$2 = retry count, $3 = the job document's "meta", and for install
$4 = the downloaded file (restart gets the job's "force" flag as $4).

Every call is appended to <state-dir>/hooks.jsonl as
{"hook", "args", "exit"} (the exit code it is about to return).

What a call does comes from the scenario's "hooks" section (copied to
<state-dir>/hooks.json by the driver): for each hook a list of behaviours,
one per call (the last one repeats), each with optional keys
  "exit":   exit code (default 0; 3 asks the agent to retry later),
  "stdout": list of lines to print,
  "sleep":  seconds to sleep before exiting (the driver may kill us),
  "print_installed": print the installed version (default for "version"),
  "stage":  version to stage (default for a successful "install": the
            scenario's "new_version"),
  "activate": make the staged version the installed one (default for a
            successful "restart": a soft restart).
The device's versions live in <state-dir>/installed and .../staged.
"""

import json
import os
import sys
import time


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    state, hook, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(os.path.join(state, "hooks.json")) as f:
        config = json.load(f)

    # Per-hook call counter, kept across agent restarts.
    counter = os.path.join(state, f"calls.{hook}")
    n = int(read(counter, "0"))
    write(counter, str(n + 1))

    behaviours = config.get("hooks", {}).get(hook) or [{}]
    b = behaviours[min(n, len(behaviours) - 1)]
    code = b.get("exit", 0)

    with open(os.path.join(state, "hooks.jsonl"), "a") as log:
        log.write(json.dumps({"hook": hook, "args": args, "exit": code}) + "\n")

    installed = os.path.join(state, "installed")
    staged = os.path.join(state, "staged")
    if b.get("print_installed", hook == "version"):
        print(read(installed), flush=True)
    for line in b.get("stdout", []):
        print(line, flush=True)
    if b.get("sleep"):
        time.sleep(b["sleep"])
    if code == 0:
        if hook == "install":
            version = b.get("stage", config.get("new_version"))
            if version:
                write(staged, version)
        if hook == "restart" and b.get("activate", True) and os.path.exists(staged):
            os.replace(staged, installed)
    sys.exit(code)


if __name__ == "__main__":
    main()
