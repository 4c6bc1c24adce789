#!/usr/bin/env python3
"""A stand-in for the AWS IoT Jobs service, for the upparat / otalite tests.

It answers the device side of the AWS IoT Jobs MQTT API
(https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html)
for one or more things, over an MQTT broker it connects to as its own client:

  $aws/things/<thing>/jobs/get               -> get/accepted (inProgressJobs,
                                                queuedJobs)
  $aws/things/<thing>/jobs/<jobId>/get       -> <jobId>/get/accepted
                                                (execution incl. jobDocument)
                                                or <jobId>/get/rejected
  $aws/things/<thing>/jobs/$next/get         -> the same for the next pending
  $aws/things/<thing>/jobs/start-next        -> start-next/accepted
  $aws/things/<thing>/jobs/<jobId>/update    -> <jobId>/update/accepted or
                                                <jobId>/update/rejected
  and, whenever the list of pending executions changes,
  $aws/things/<thing>/jobs/notify and .../jobs/notify-next.

Every response echoes the request's clientToken. The job table comes from a
JSON scenario file (see README.md). Everything the device publishes, and
everything this service publishes, is appended in order to a JSONL record
file; the device's messages are told apart with MQTT 5 "no local"
subscriptions (the service never receives its own messages).

The artifact of each job is served over HTTP(S) on loopback in the same
process. A job document's "file" may hold the AWS placeholder
${aws:iot:s3-presigned-url:<s3 url>}; as on AWS, each delivery of the
document replaces it with a freshly "signed" URL. Scenarios can make the
first URLs expired (403, as S3 answers) and can stall a download after some
bytes (so that a job can be cancelled, or the device killed, mid-download
deterministically). Range requests are supported (206/416).

Scenario actions (cancel, delete, add a job) run when a matching device
message has been seen N times, or when the driver drops a file named
<action>.<jobId> (e.g. cancel.upparat_job-1) into --control-dir.

Run with a Python that has paho-mqtt 1.6 (the upparat venv's python).
"""

import argparse
import hashlib
import http.server
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from matching import message_matches  # noqa: E402

PENDING = ("QUEUED", "IN_PROGRESS")
TERMINAL = ("SUCCEEDED", "FAILED", "REJECTED", "REMOVED", "CANCELED", "TIMED_OUT")
# Status transitions a device may ask for (UpdateJobExecution).
DEVICE_STATUSES = ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED")
PRESIGNED = re.compile(r"\$\{aws:iot:s3-presigned-url:([^}]*)\}")


def artifact_bytes(size, seed):
    """Deterministic pseudo-random content of `size` bytes."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


class Recorder:
    """Appends records to the JSONL file, flushed line by line."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.seq = 0
        self.file = open(path, "a", buffering=1)

    def write(self, record):
        with self.lock:
            self.seq += 1
            record = {"seq": self.seq, "t": round(time.time(), 3), **record}
            self.file.write(json.dumps(record, sort_keys=True) + "\n")
            return record


class Execution:
    """One job execution on one thing."""

    def __init__(self, spec, thing, now):
        self.job_id = spec["jobId"]
        self.thing = thing
        self.document = spec["document"]
        self.status = spec.get("status", "QUEUED")
        self.status_details = spec.get("statusDetails")
        self.queued_at = now + spec.get("queuedAtOffset", 0)
        self.started_at = now if self.status == "IN_PROGRESS" else None
        self.last_updated_at = self.queued_at
        self.version_number = 1
        self.execution_number = 1
        self.deleted = False

    def summary(self):
        out = {
            "jobId": self.job_id,
            "queuedAt": self.queued_at,
            "lastUpdatedAt": self.last_updated_at,
            "executionNumber": self.execution_number,
            "versionNumber": self.version_number,
        }
        if self.started_at is not None:
            out["startedAt"] = self.started_at
        return out

    def state(self):
        out = {"status": self.status, "versionNumber": self.version_number}
        if self.status_details is not None:
            out["statusDetails"] = self.status_details
        return out


class JobsService:
    def __init__(self, scenario, args):
        self.scenario = scenario
        self.args = args
        self.thing = args.thing
        self.lock = threading.RLock()
        self.recorder = Recorder(args.record)
        now = int(time.time())
        self.executions = [Execution(j, self.thing, now) for j in scenario.get("jobs", [])]
        # Actions triggered by a hook call ("when": {"hook": ...}) are the
        # driver's: it sees the hook log and writes a control file.
        self.actions = [dict(a, seen=0, done=False) for a in scenario.get("actions", [])
                        if a["do"] in ("cancel", "delete", "add_job")
                        and "hook" not in a.get("when", {})]
        http = scenario.get("http", {})
        self.expire_first = http.get("expire_first_urls", 0)
        self.stall_after = http.get("stall_after_bytes")
        self.stall_release_s = http.get("stall_release_s", 15)
        self.stalled_once = set()
        # Requests of an object let through before the one that stalls.
        self.stall_skip = http.get("stall_skip", 0)
        self.requests_seen = {}
        self.urls_issued = 0
        self.expired = set()
        self.artifacts = {}
        self.job_changed = threading.Condition(self.lock)
        self.base = f"$aws/things/{self.thing}/jobs/"
        self.http_base = None
        self.client = None
        self.outbox = None

    # ---------------------------------------------------------------- MQTT

    def connect(self):
        c = mqtt.Client(client_id=f"jobs-service-{os.getpid()}", protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(cafile=self.args.cafile)
        ctx.load_cert_chain(self.args.certfile, self.args.keyfile)
        c.tls_set_context(ctx)
        c.reconnect_delay_set(min_delay=0.2, max_delay=1)
        c.on_connect = self.on_connect
        c.on_message = self.on_message
        c.on_subscribe = self.on_subscribe
        self.client = c
        # Retry the first connection: the broker may still be starting.
        for _ in range(50):
            try:
                c.connect(self.args.host, self.args.port, keepalive=30)
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("jobs service: cannot connect to the broker")
        c.loop_start()

    def on_connect(self, client, _userdata, _flags, rc, _props=None):
        if rc != 0:
            return
        # "#" with no-local: everything any other client publishes, which
        # is what the device under test published.
        # "#" does not match topics starting with "$" (MQTT 3.1.1 4.7.2), so
        # "$aws/#" is asked for too.
        opts = SubscribeOptions(qos=1, noLocal=True)
        client.subscribe([("#", opts), ("$aws/#", opts)])
        self.recorder.write({"from": "event", "event": "service-connected"})

    def on_subscribe(self, _client, _userdata, _mid, _granted, _props=None):
        # The driver waits for this file before it starts the device.
        if self.args.ready_file and not os.path.exists(self.args.ready_file):
            open(self.args.ready_file, "w").close()

    def publish(self, rel_topic, payload):
        """Publish a response or notification. While a device message is
        being handled, the publishes wait in self.outbox so that the record
        of the request (with the summary of its reply) comes first."""
        if self.outbox is not None:
            self.outbox.append((rel_topic, payload))
            return
        topic = self.base + rel_topic
        self.recorder.write({"from": "service", "topic": topic, "rel_topic": rel_topic,
                             "payload": payload})
        self.client.publish(topic, json.dumps(payload), qos=1)

    def on_message(self, _client, _userdata, msg):
        try:
            text = msg.payload.decode()
            payload = json.loads(text) if text.strip() else None
        except (UnicodeDecodeError, ValueError):
            payload = {"__raw__": msg.payload.decode(errors="replace")}
        rel = msg.topic[len(self.base):] if msg.topic.startswith(self.base) else None
        record = {"from": "client", "topic": msg.topic, "qos": msg.qos,
                  "rel_topic": rel if rel is not None else msg.topic, "payload": payload}
        with self.lock:
            self.outbox = []
            try:
                if rel is not None:
                    self.handle_request(rel, payload)
            finally:
                outbox, self.outbox = self.outbox, None
            # "reply": which response topics the request got, e.g.
            # "accepted", "rejected:InvalidStateTransition".
            replies = []
            for topic, body in outbox:
                if topic.endswith("/accepted"):
                    replies.append("accepted")
                elif topic.endswith("/rejected"):
                    replies.append("rejected:" + body.get("code", ""))
            if replies:
                record["reply"] = ",".join(replies)
            record = self.recorder.write(record)
            for topic, body in outbox:
                self.publish(topic, body)
            self.run_actions(record)

    # ------------------------------------------------------------ requests

    def find(self, job_id):
        for e in self.executions:
            if e.job_id == job_id and not e.deleted:
                return e
        return None

    def pending(self):
        """Pending executions, oldest queued first (AWS's order)."""
        return sorted((e for e in self.executions if not e.deleted and e.status in PENDING),
                      key=lambda e: (e.queued_at, e.job_id))

    def next_pending(self):
        in_progress = [e for e in self.pending() if e.status == "IN_PROGRESS"]
        queued = [e for e in self.pending() if e.status == "QUEUED"]
        return (in_progress or queued or [None])[0]

    def execution_json(self, e, include_document=True):
        out = {"jobId": e.job_id, "thingName": e.thing, "status": e.status,
               "queuedAt": e.queued_at, "lastUpdatedAt": e.last_updated_at,
               "versionNumber": e.version_number, "executionNumber": e.execution_number}
        if e.started_at is not None:
            out["startedAt"] = e.started_at
        if e.status_details is not None:
            out["statusDetails"] = e.status_details
        if include_document:
            out["jobDocument"] = self.render_document(e)
        return out

    def render_document(self, e):
        """The job document as delivered: presigned-URL placeholders are
        replaced by a fresh URL on every delivery, like AWS does."""
        def sign(match):
            name = match.group(1).rstrip("/").rsplit("/", 1)[-1] or "artifact"
            self.urls_issued += 1
            sig = self.urls_issued
            if sig <= self.expire_first:
                self.expired.add(str(sig))
            self.artifacts.setdefault(name, e.job_id)
            return (f"{self.http_base}/{urllib.parse.quote(name)}"
                    f"?X-Amz-Expires=3600&X-Amz-Signature={sig}")
        return json.loads(PRESIGNED.sub(sign, json.dumps(e.document)))

    def reply(self, rel_topic, payload, request):
        token = request.get("clientToken") if isinstance(request, dict) else None
        payload["timestamp"] = int(time.time())
        if token is not None:
            payload["clientToken"] = token
        self.publish(rel_topic, payload)

    def reject(self, rel_topic, request, code, message, execution=None):
        payload = {"code": code, "message": message}
        if execution is not None:
            payload["executionState"] = execution.state()
        self.reply(rel_topic + "/rejected", payload, request)

    def handle_request(self, rel, request):
        parts = rel.split("/")
        if request is not None and not isinstance(request, dict) or (
                isinstance(request, dict) and "__raw__" in request):
            if parts[-1] in ("get", "update", "start-next"):
                self.reject(rel, {}, "InvalidJson", "Request payload is not valid JSON")
            return
        request = request or {}
        if parts == ["get"]:
            pending = self.pending()
            self.reply("get/accepted", {
                "inProgressJobs": [e.summary() for e in pending if e.status == "IN_PROGRESS"],
                "queuedJobs": [e.summary() for e in pending if e.status == "QUEUED"],
            }, request)
        elif parts == ["start-next"]:
            e = self.next_pending()
            payload = {}
            if e is not None:
                if e.status == "QUEUED":
                    self.set_status(e, "IN_PROGRESS", request.get("statusDetails"))
                payload["execution"] = self.execution_json(e)
            self.reply("start-next/accepted", payload)
        elif len(parts) == 2 and parts[1] == "get":
            job_id = parts[0]
            e = self.next_pending() if job_id == "$next" else self.find(job_id)
            if e is None:
                if job_id == "$next":
                    self.reply(rel + "/accepted", {}, request)
                else:
                    self.reject(rel, request, "ResourceNotFound",
                                f"Job execution {job_id} not found on {self.thing}")
                return
            self.reply(rel + "/accepted", {"execution": self.execution_json(
                e, request.get("includeJobDocument", True))}, request)
        elif len(parts) == 2 and parts[1] == "update":
            self.handle_update(rel, parts[0], request)

    def handle_update(self, rel, job_id, request):
        e = self.find(job_id)
        status = request.get("status")
        if e is None:
            return self.reject(rel, request, "ResourceNotFound",
                               f"Job execution {job_id} not found on {self.thing}")
        if status not in DEVICE_STATUSES:
            return self.reject(rel, request, "InvalidRequest", f"Invalid status: {status}")
        details = request.get("statusDetails")
        if details is not None and (not isinstance(details, dict) or not all(
                isinstance(v, str) for v in details.values())):
            return self.reject(rel, request, "InvalidRequest",
                               "statusDetails must map strings to strings")
        expected = request.get("expectedVersion")
        if expected is not None and int(expected) != e.version_number:
            return self.reject(rel, request, "VersionMismatch",
                               "expectedVersion does not match", e)
        if e.status in TERMINAL:
            return self.reject(rel, request, "InvalidStateTransition",
                               f"Cannot update {job_id} from {e.status} to {status}", e)
        self.set_status(e, status, details)
        payload = {}
        if request.get("includeJobExecutionState"):
            payload["executionState"] = e.state()
        if request.get("includeJobDocument"):
            payload["jobDocument"] = self.render_document(e)
        self.reply(rel + "/accepted", payload, request)

    def set_status(self, e, status, details):
        was_pending = e.status in PENDING
        before = self.next_pending()
        e.status = status
        if details is not None:
            e.status_details = details
        if status == "IN_PROGRESS" and e.started_at is None:
            e.started_at = int(time.time())
        e.last_updated_at = int(time.time())
        e.version_number += 1
        if was_pending and status not in PENDING:
            self.notify(before)
        self.job_changed.notify_all()

    def notify(self, next_before=None):
        """Publish notify (the pending list changed) and notify-next (if the
        next pending execution changed)."""
        pending = self.pending()
        jobs = {}
        for status in PENDING:
            lst = [e.summary() for e in pending if e.status == status]
            if lst:
                jobs[status] = lst
        self.publish("notify", {"timestamp": int(time.time()), "jobs": jobs})
        nxt = self.next_pending()
        if nxt is not next_before:
            payload = {"timestamp": int(time.time())}
            if nxt is not None:
                payload["execution"] = self.execution_json(nxt)
            self.publish("notify-next", payload)

    # ------------------------------------------------------------- actions

    def run_actions(self, record):
        for a in self.actions:
            if a["done"] or not message_matches(a.get("when", {}), record):
                continue
            a["seen"] += 1
            if a["seen"] >= a.get("when", {}).get("count", 1):
                a["done"] = True
                self.apply(a["do"], a.get("job"), a)

    def apply(self, action, job_id, spec=None):
        before = self.next_pending()
        self.recorder.write({"from": "event", "event": action, "job": job_id})
        if action == "add_job":
            e = Execution(spec["spec"], self.thing, int(time.time()))
            self.executions.append(e)
            self.notify(before)
            return
        e = self.find(job_id)
        if e is None:
            return
        if action == "cancel":
            # CancelJob with force=true: QUEUED and IN_PROGRESS executions
            # become CANCELED.
            was_pending = e.status in PENDING
            e.status = "CANCELED"
            e.version_number += 1
            e.last_updated_at = int(time.time())
            if was_pending:
                self.notify(before)
        elif action == "delete":
            # DeleteJobExecution with force=true: the execution is gone.
            was_pending = e.status in PENDING
            e.deleted = True
            if was_pending:
                self.notify(before)
        self.job_changed.notify_all()

    def watch_control_dir(self):
        """Actions requested by the driver as files <action>.<jobId>."""
        d = self.args.control_dir
        while True:
            for name in sorted(os.listdir(d)):
                action, _, job_id = name.partition(".")
                if action in ("cancel", "delete"):
                    os.remove(os.path.join(d, name))
                    with self.lock:
                        self.apply(action, job_id)
            time.sleep(0.05)

    def dump_state(self):
        """The final job table, written by the driver's request (SIGTERM)."""
        with self.lock:
            return {e.job_id: {"status": "DELETED" if e.deleted else e.status,
                               "statusDetails": e.status_details,
                               "versionNumber": e.version_number}
                    for e in self.executions}

    # ---------------------------------------------------------------- HTTP

    def serve_http(self):
        service = self
        artifacts = {}
        for spec in self.scenario.get("artifacts", {"artifact.bin": {"size": 307200}}).items():
            name, a = spec
            if "file" in a:
                # A real file (a Mender Artifact made by the test).
                with open(a["file"], "rb") as f:
                    artifacts[name] = f.read()
            else:
                artifacts[name] = artifact_bytes(a["size"], name)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                name = urllib.parse.unquote(url.path.lstrip("/"))
                query = urllib.parse.parse_qs(url.query)
                sig = query.get("X-Amz-Signature", [""])[0]
                rng = self.headers.get("Range")
                rec = {"from": "http", "method": "GET", "path": url.path,
                       "signature": sig, "range": rng}
                data = artifacts.get(name)
                if data is None or not sig:
                    return self.finish_with(404, rec, b"<Error><Code>NoSuchKey</Code></Error>")
                if sig in service.expired:
                    return self.finish_with(403, rec, b"<Error><Code>AccessDenied</Code>"
                                            b"<Message>Request has expired</Message></Error>")
                start, end = 0, len(data) - 1
                if rng:
                    m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                    if not m or not (m.group(1) or m.group(2)):
                        return self.finish_with(400, rec, b"bad range")
                    if m.group(1):
                        start = int(m.group(1))
                        if m.group(2):
                            end = min(int(m.group(2)), end)
                    else:
                        start = max(0, len(data) - int(m.group(2)))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        return self.finish_with(416, rec, b"", sent=True)
                body = data[start:end + 1]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                rec["status"] = 206 if rng else 200
                service.recorder.write(rec)
                stall = service.stall_after
                seen = service.requests_seen.get(name, 0)
                service.requests_seen[name] = seen + 1
                if (stall is not None and name not in service.stalled_once and start < stall
                        and seen >= service.stall_skip):
                    service.stalled_once.add(name)
                    self.wfile.write(body[:stall - start])
                    self.wfile.flush()
                    service.recorder.write({"from": "event", "event": "http-stalled",
                                            "bytes": stall})
                    service.wait_job_gone(service.artifacts.get(name), service.stall_release_s)
                    # Close without the rest, like a dropped connection.
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def finish_with(self, code, rec, body, sent=False):
                if not sent:
                    self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                rec["status"] = code
                service.recorder.write(rec)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        scheme = "http"
        if self.args.https_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.args.https_cert, self.args.https_key)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        self.http_base = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def wait_job_gone(self, job_id, timeout):
        """Block until the job is no longer pending (cancelled, deleted,
        finished) or the timeout passes."""
        deadline = time.time() + timeout
        with self.lock:
            while time.time() < deadline:
                e = self.find(job_id) if job_id else None
                if e is None or e.status not in PENDING:
                    break
                self.job_changed.wait(deadline - time.time())
        time.sleep(0.5)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", required=True)
    p.add_argument("--thing", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--cafile", required=True)
    p.add_argument("--certfile", required=True)
    p.add_argument("--keyfile", required=True)
    p.add_argument("--https-cert", help="serve artifacts over HTTPS with this cert")
    p.add_argument("--https-key")
    p.add_argument("--record", required=True, help="JSONL file of every message")
    p.add_argument("--control-dir", required=True, help="<action>.<jobId> trigger files")
    p.add_argument("--ready-file", help="created once subscribed")
    p.add_argument("--state-file", required=True, help="final job table (on SIGTERM)")
    args = p.parse_args()

    with open(args.scenario) as f:
        scenario = json.load(f)
    service = JobsService(scenario, args)
    service.serve_http()
    service.connect()
    threading.Thread(target=service.watch_control_dir, daemon=True).start()

    # The state file is rewritten whenever something may have changed, so
    # the driver can read the job table at any time (end conditions).
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    last = None
    while not stop.is_set():
        state = json.dumps(service.dump_state(), sort_keys=True)
        if state != last:
            tmp = args.state_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(state)
            os.replace(tmp, args.state_file)
            last = state
        stop.wait(0.05)
    service.client.disconnect()
    service.client.loop_stop()


if __name__ == "__main__":
    main()
