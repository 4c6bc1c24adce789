#!/usr/bin/env python3
"""Run one AWS IoT Jobs scenario against a device agent and write the
normalized transcript of what the agent did.

    run_scenario.py tests/jobs/scenarios/success.json \\
        [--client '/opt/otalite-ci/upparat-venv/bin/upparat'] [--out t.json]

In a fresh temp dir it makes a CA, a broker certificate and client
certificates with openssl, starts mosquitto with mutual TLS (as AWS IoT
Core) on <random 127.x.y.z>:8883 (upparat insists on port 8883 or 443 for
certificate authentication, so the loopback address varies instead of the
port), starts jobs_service.py, writes an upparat INI and the hook scripts,
and runs `<client> -c <ini>` until the scenario's jobs are finished
(then a quiet period), or the timeout. Every process is ended by its PID
(the agent by its process group, so that hooks it left running go too).

The transcript (JSON, see README.md) lists the messages the agent
published, the hook calls, the HTTP requests, the actions and the final
job table, normalized so that runs can be compared with a fixture.
Exit status: 0 done, 2 the end condition was not reached in time.
"""

import argparse
import json
import os
import pwd
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from matching import message_matches  # noqa: E402

VENV = "/opt/otalite-ci/upparat-venv"
DEFAULT_CLIENT = f"{VENV}/bin/upparat"
HOOKS = ("version", "download", "install", "restart", "ready")
DRIVER_ACTIONS = ("restart_broker", "restart_client", "reboot")
PENDING = ("QUEUED", "IN_PROGRESS")


def log(msg):
    print(f"[run_scenario] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ setup

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d, address):
    """CA, broker/HTTPS server cert (127.0.0.1, localhost, the broker's
    address), a device cert and a jobs-service cert; all EC P-256."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=otalite test CA", cwd=d)
    for name, ext in (("server", f"subjectAltName=IP:{address},IP:127.0.0.1,DNS:localhost"),
                      ("device", "extendedKeyUsage=clientAuth"),
                      ("service", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext", cwd=d)


def free_address(port=8883):
    """A random loopback address whose port 8883 is free."""
    for _ in range(100):
        addr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
        s = socket.socket()
        try:
            s.bind((addr, port))
            return addr
        except OSError:
            continue
        finally:
            s.close()
    sys.exit("no free loopback address for port 8883")


def wait_port(addr, port, proc, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            socket.create_connection((addr, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"broker did not start on {addr}:{port}")


class Run:
    """One scenario run: the processes and the files of the temp dir."""

    def __init__(self, scenario, args):
        self.scenario = scenario
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="otalite-jobs-")
        self.addr = free_address()
        self.port = 8883
        self.thing = scenario.get("thing", "otalite-test-thing")
        self.records_path = os.path.join(self.tmp, "records.jsonl")
        self.state_file = os.path.join(self.tmp, "jobs-state.json")
        self.control = os.path.join(self.tmp, "control")
        self.hook_state = os.path.join(self.tmp, "device")
        self.broker = self.service = self.client = None
        self.client_runs = 0
        self.events = []
        os.makedirs(self.control)
        os.makedirs(self.hook_state)

    # ------------------------------------------------------------ broker

    def start_broker(self):
        conf = os.path.join(self.tmp, "mosquitto.conf")
        t = self.tmp
        with open(conf, "w") as f:
            f.write(f"""# AWS IoT Core stand-in: mutual TLS only, no persistence.
# As root mosquitto would switch to the "mosquitto" user, which cannot
# read the temp dir; the user it runs as is kept instead.
user {pwd.getpwuid(os.getuid()).pw_name}
per_listener_settings false
allow_anonymous true
persistence false
log_dest file {t}/mosquitto.log
log_type error
log_type warning
log_type notice
listener {self.port} {self.addr}
cafile {t}/ca.pem
certfile {t}/server.pem
keyfile {t}/server.key
require_certificate true
""")
        self.broker = subprocess.Popen(["mosquitto", "-c", conf],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.addr, self.port, self.broker)

    def stop_broker(self):
        if self.broker and self.broker.poll() is None:
            self.broker.terminate()
            try:
                self.broker.wait(5)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait()

    # ----------------------------------------------------------- service

    def start_service(self):
        t = self.tmp
        ready = os.path.join(t, "service-ready")
        cmd = [self.args.python, os.path.join(HERE, "jobs_service.py"),
               "--scenario", self.args.scenario, "--thing", self.thing,
               "--host", self.addr, "--port", str(self.port),
               "--cafile", f"{t}/ca.pem", "--certfile", f"{t}/service.pem",
               "--keyfile", f"{t}/service.key", "--record", self.records_path,
               "--control-dir", self.control, "--ready-file", ready,
               "--state-file", self.state_file]
        if not self.args.plain_http:
            cmd += ["--https-cert", f"{t}/server.pem", "--https-key", f"{t}/server.key"]
        self.service = subprocess.Popen(cmd, stdout=open(f"{t}/service.log", "w"),
                                        stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while not os.path.exists(ready):
            if time.time() > deadline or self.service.poll() is not None:
                sys.exit(f"jobs service did not start, see {t}/service.log")
            time.sleep(0.05)

    def stop_service(self):
        if self.service and self.service.poll() is None:
            self.service.terminate()
            try:
                self.service.wait(5)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()

    # ------------------------------------------------------------ device

    def write_device(self):
        """Hook wrappers, the device's version files and the INI."""
        sc = self.scenario
        with open(os.path.join(self.hook_state, "hooks.json"), "w") as f:
            json.dump({"hooks": sc.get("hooks", {}), "new_version": sc.get("new_version")}, f)
        with open(os.path.join(self.hook_state, "installed"), "w") as f:
            f.write(sc.get("installed_version", "1.0.0"))
        hooks_dir = os.path.join(self.tmp, "hooks")
        os.makedirs(hooks_dir)
        # Commands the agent finds on PATH (a fake `reboot`), logged and
        # scripted as hooks.
        self.path_dir = os.path.join(self.tmp, "bin")
        os.makedirs(self.path_dir)
        lines = []
        for name in list(sc.get("ini_hooks", HOOKS)) + list(sc.get("path_commands", [])):
            on_path = name in sc.get("path_commands", [])
            path = os.path.join(self.path_dir if on_path else hooks_dir, name)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n# Scenario hook: logs its call, behaves as the "
                        "scenario says.\n"
                        f"exec /usr/bin/python3 {os.path.join(HERE, 'hook.py')} "
                        f"{self.hook_state} {name} \"$@\"\n")
            os.chmod(path, 0o755)
            if not on_path:
                lines.append(f"{name} = {path}")
        settings = sc.get("hook_settings", {})
        lines.append(f"retry_interval = {settings.get('retry_interval', 1)}")
        lines.append(f"max_retries = {settings.get('max_retries', 3)}")
        t = self.tmp
        self.ini = os.path.join(t, "agent.ini")
        with open(self.ini, "w") as f:
            f.write(f"""[service]
log_level = INFO
download_location = {t}/download

[broker]
host = {self.addr}
port = {self.port}
thing_name = {self.thing}
client_id = {self.thing}
cafile = {t}/ca.pem
certfile = {t}/device.pem
keyfile = {t}/device.key

[hooks]
""" + "\n".join(lines) + "\n" + sc.get("ini_extra", ""))

    def start_client(self):
        self.client_runs += 1
        env = dict(os.environ)
        # The artifact server's certificate is signed by the test CA.
        env["SSL_CERT_FILE"] = os.path.join(self.tmp, "ca.pem")
        env["PATH"] = self.path_dir + os.pathsep + env.get("PATH", "")
        env.update(self.scenario.get("client_env", {}))
        cmd = shlex.split(self.args.client) + ["-c", self.ini]
        out = open(os.path.join(self.tmp, f"client.{self.client_runs}.log"), "w")
        self.client = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True, cwd=self.tmp)
        log(f"client started (pid {self.client.pid}): {' '.join(cmd)}")

    def kill_client(self, graceful=False):
        """End the agent and everything in its process group (its hooks)."""
        p = self.client
        if p is None:
            return
        if graceful and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        self.client = None

    # ----------------------------------------------------------- actions

    def hook_calls(self):
        try:
            with open(os.path.join(self.hook_state, "hooks.jsonl")) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def do_action(self, action):
        what = action["do"]
        if what in ("cancel", "delete"):
            # A service action on a hook trigger: through the control dir
            # (the service records it as its own event).
            log(f"action {what} (hook trigger)")
            with open(os.path.join(self.control, f"{what}.{action['job']}"), "w"):
                pass
            return
        self.events.append({"event": what})
        log(f"action {what}")
        if what == "restart_broker":
            self.stop_broker()
            time.sleep(action.get("down_s", 0.5))
            self.start_broker()
        elif what == "restart_client":
            self.kill_client()
            time.sleep(action.get("down_s", 0.5))
            self.start_client()
        elif what == "reboot":
            # The restart hook "reboots": the agent dies with its hooks, the
            # staged version becomes the installed one, the agent starts.
            self.kill_client()
            staged = os.path.join(self.hook_state, "staged")
            if action.get("activate", True) and os.path.exists(staged):
                os.replace(staged, os.path.join(self.hook_state, "installed"))
            if "set_installed" in action:
                # What the version hook prints after this boot.
                with open(os.path.join(self.hook_state, "installed"), "w") as f:
                    f.write(action["set_installed"])
            if "boot" in action:
                # What the bootloader does at this boot (a command the
                # test gives, e.g. U-Boot's fallback on a failed trial).
                subprocess.run(action["boot"], shell=True, check=True)
            time.sleep(action.get("down_s", 0.5))
            self.start_client()

    # --------------------------------------------------------------- run

    def records(self):
        try:
            with open(self.records_path) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def jobs_state(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def finished(self, state):
        end = self.scenario.get("end", {})
        wanted = end.get("jobs")
        if wanted:
            return all(state.get(j, {}).get("status") in s for j, s in wanted.items())
        return bool(state) and all(j["status"] not in PENDING for j in state.values())

    def run(self):
        sc = self.scenario
        make_certs(self.tmp, self.addr)
        self.start_broker()
        self.start_service()
        self.write_device()
        self.start_client()
        # The driver's actions, and every action triggered by a hook call
        # ("when": {"hook": "<name>", "count": n}: the n-th call of the hook
        # has started; a service action then goes through the control dir).
        actions = [dict(a, seen=0, done=False) for a in sc.get("actions", [])
                   if a["do"] in DRIVER_ACTIONS or "hook" in a.get("when", {})]
        hooks_seen = 0
        timeout = sc.get("timeout_s", 20)
        settle = sc.get("settle_s", 1.5)
        start = time.time()
        seen = 0
        done_at = None
        last_client_msg = time.time()
        timed_out = False
        while True:
            recs = self.records()
            for r in recs[seen:]:
                if r.get("from") == "client":
                    last_client_msg = time.time()
                for a in actions:
                    if "hook" in a.get("when", {}):
                        continue  # a hook trigger (below)
                    if not a["done"] and message_matches(a.get("when", {}), r):
                        a["seen"] += 1
                        if a["seen"] >= a.get("when", {}).get("count", 1):
                            a["done"] = True
                            self.do_action(a)
            seen = len(recs)
            calls = self.hook_calls()
            for call in calls[hooks_seen:]:
                for a in actions:
                    when = a.get("when", {})
                    if not a["done"] and "due" not in a and when.get("hook") == call["hook"]:
                        a["seen"] += 1
                        if a["seen"] >= when.get("count", 1):
                            # "delay_s": the agent has that long to say what
                            # it says when the hook starts (upparat's QoS 0
                            # publishes go out from paho's thread).
                            a["due"] = time.time() + when.get("delay_s", 0)
            hooks_seen = len(calls)
            for a in actions:
                if not a["done"] and "due" in a and time.time() >= a["due"]:
                    a["done"] = True
                    self.do_action(a)
            if self.client is not None and self.client.poll() is not None:
                log(f"client exited with {self.client.returncode}")
                self.events.append({"event": "client-exited", "code": self.client.returncode})
                self.client = None
            all_done = all(a["done"] for a in actions) and self.finished(self.jobs_state())
            if all_done and done_at is None:
                done_at = time.time()
            if done_at is not None and time.time() - max(done_at, last_client_msg) >= settle:
                break
            if time.time() - start > timeout:
                timed_out = True
                log(f"timeout after {timeout}s")
                break
            time.sleep(0.05)
        self.kill_client(graceful=True)
        time.sleep(0.2)
        self.stop_service()
        self.stop_broker()
        return self.transcript(timed_out)

    # -------------------------------------------------------- transcript

    def normalize(self, value):
        """Replace what legitimately varies between runs."""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k == "clientToken":
                    out[k] = "<clientToken>"
                elif k in ("timestamp", "queuedAt", "startedAt", "lastUpdatedAt"):
                    out[k] = "<time>"
                else:
                    out[k] = self.normalize(v)
            return out
        if isinstance(value, list):
            return [self.normalize(v) for v in value]
        if isinstance(value, str):
            return (value.replace(self.tmp, "<tmp>").replace(self.thing, "<thing>")
                    .replace(self.addr, "<broker>"))
        return value

    def transcript(self, timed_out):
        recs = self.records()
        published = []
        for r in recs:
            if r["from"] != "client":
                continue
            entry = {"topic": r["topic"], "qos": r["qos"], "payload": r["payload"]}
            if "reply" in r:
                entry["reply"] = r["reply"]
            published.append(entry)
        http = [{k: r.get(k) for k in ("method", "path", "signature", "range", "status")}
                for r in recs if r["from"] == "http"]
        events = [{"event": r["event"], **({"job": r["job"]} if r.get("job") else {})}
                  for r in recs if r["from"] == "event"
                  and r["event"] not in ("service-connected",)]
        hooks = []
        try:
            with open(os.path.join(self.hook_state, "hooks.jsonl")) as f:
                for line in f:
                    h = json.loads(line)
                    args = h["args"]
                    if args:
                        args[0] = "<elapsed>"  # $1: seconds since the first call
                    hooks.append({"hook": h["hook"], "args": args, "exit": h["exit"]})
        except FileNotFoundError:
            pass
        final = self.jobs_state()
        return self.normalize({
            "scenario": os.path.splitext(os.path.basename(self.args.scenario))[0],
            "timed_out": timed_out,
            "published": published,
            "hooks": hooks,
            "http": http,
            "actions": events + self.events,
            "final_jobs": final,
            "client_starts": self.client_runs,
        })


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scenario", help="scenario JSON file")
    p.add_argument("--client", default=DEFAULT_CLIENT,
                   help="agent command; '-c <ini>' is appended (default: upparat)")
    p.add_argument("--python", default=f"{VENV}/bin/python",
                   help="python with paho-mqtt 1.6 for jobs_service.py")
    p.add_argument("--out", help="transcript file (default: stdout)")
    p.add_argument("--plain-http", action="store_true",
                   help="serve the artifact over http:// instead of https://")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = p.parse_args()
    with open(args.scenario) as f:
        scenario = json.load(f)

    run = Run(scenario, args)
    try:
        transcript = run.run()
    finally:
        run.kill_client()
        run.stop_service()
        run.stop_broker()
        if args.keep:
            log(f"kept {run.tmp}")
        else:
            shutil.rmtree(run.tmp, ignore_errors=True)
    text = json.dumps(transcript, indent=1, sort_keys=True) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 2 if transcript["timed_out"] else 0


if __name__ == "__main__":
    sys.exit(main())
