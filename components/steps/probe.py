"""What `make status` reads on one node, run there as root (`sudo -n
python3 -`, this file on stdin; every node has python3: cloud-init is
written in it). Reads only; prints one JSON object. Each part is what the
node has: an etcd member's status, alarms, quota and backups; the
certificates in /etc/etcd/pki and /etc/kubernetes/pki; HAProxy's view of its
backends (its stats socket); the IPv4 addresses (the VIP's holder).

With `--prometheus` it is hakube's own exporter on etcd members and control
planes (monitoring.sources): run by the socket unit hakube-metrics.socket
for each connection (Accept=yes: the connection is stdin and stdout), it
answers one HTTP request with what no other exporter has: the newest
verified snapshot's time and the timer's period, the newest off-host copy's,
every certificate's expiry. Only to the addresses in HAKUBE_METRICS_SOURCES;
anyone else gets 403 and nothing read."""
import calendar
import glob
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time

PKI = "/etc/etcd/pki"
ETCD_CONFIG = "/etc/etcd/etcd.conf.yml"
HAPROXY_SOCKET = "/run/haproxy/admin.sock"
BACKUP_SCRIPT = "/usr/local/sbin/hakube-etcd-backup"


def run(cmd, timeout=15):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "ETCDCTL_API": "3"})
        return p.returncode, p.stdout, p.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        return 255, "", str(err)


def etcd():
    out = {"active": run(["systemctl", "is-active", "etcd"])[1].strip()}
    base = ["/usr/local/bin/etcdctl", "--endpoints=https://127.0.0.1:2379", f"--cacert={PKI}/ca.crt",
            f"--cert={PKI}/healthcheck-client.crt", f"--key={PKI}/healthcheck-client.key",
            "--dial-timeout=2s", "--command-timeout=5s"]
    rc, stdout, err = run(base + ["endpoint", "status", "-w", "json"])
    if rc == 0:
        status = json.loads(stdout)[0]["Status"]
        out["status"] = {"memberId": format(status["header"]["member_id"], "x"),
                         "leader": format(status.get("leader", 0), "x"), "version": status.get("version"),
                         "dbSize": status.get("dbSize", 0), "dbSizeInUse": status.get("dbSizeInUse", 0),
                         "raftIndex": status.get("raftIndex", 0), "raftTerm": status.get("raftTerm", 0),
                         "raftAppliedIndex": status.get("raftAppliedIndex", 0),
                         "isLearner": bool(status.get("isLearner")), "errors": status.get("errors") or []}
    else:
        # etcdctl ends with one "Error: ..." line after its client's JSON log lines
        out["error"] = (err.splitlines() or [f"etcdctl exited {rc}"])[-1]
    rc, stdout, _ = run(base + ["alarm", "list"])
    out["alarms"] = [line.strip() for line in stdout.splitlines() if line.strip()] if rc == 0 else []
    try:
        m = re.search(r"^quota-backend-bytes:\s*(\d+)", open(ETCD_CONFIG).read(), re.M)
        out["quotaBytes"] = int(m.group(1)) if m else 2 * 1024 ** 3      # etcd's default: 2 GiB
    except OSError:
        pass
    out["backups"] = backups()
    return out


def backups():
    try:
        job = open(BACKUP_SCRIPT).read()        # its values: BACKUP_DIR, OFFSITE_URL
    except OSError:
        return {"enabled": False}
    m = re.search(r"^BACKUP_DIR=(\S+)$", job, re.M)
    folder = m.group(1).strip("'") if m else "/var/backups/etcd"
    snaps = sorted((os.stat(p).st_mtime, os.stat(p).st_size, p) for p in glob.glob(f"{folder}/etcd-*.db"))
    info = {"enabled": True, "dir": folder, "count": len(snaps)}
    m = re.search(r"^OFFSITE_URL=(\S+)$", job, re.M)
    if m:
        # etcd.backup.offsite: this member's record of its last off-host copy (the leader copies)
        info["offsite"] = {"url": m.group(1).strip("'")}
        try:
            name, sha, stamp = open(f"{folder}/offsite.last").read().split()[:3]
            info["offsite"].update(name=name, sha256=sha, time=int(stamp))
        except (OSError, ValueError):
            pass
    if snaps:
        info.update(newest=snaps[-1][2], newestTime=snaps[-1][0], newestSize=snaps[-1][1])
    show = run(["systemctl", "show", "hakube-etcd-backup.service", "-p", "Result", "-p",
                "ExecMainExitTimestamp", "--value"])[1].splitlines()
    info["lastResult"] = show[0] if show else ""
    timer = run(["systemctl", "show", "hakube-etcd-backup.timer", "-p", "TimersCalendar", "--value"])[1]
    cal = re.search(r"OnCalendar=(.*?) ;", timer)
    if cal:
        info["calendar"] = cal.group(1).strip()
        nxt = run(["env", "TZ=UTC", "systemd-analyze", "calendar", "--iterations=2", info["calendar"]])[1]
        stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", nxt)
        if len(stamps) >= 2:
            t = [calendar.timegm(time.strptime(s, "%Y-%m-%d %H:%M:%S")) for s in stamps[:2]]
            info["intervalSeconds"] = int(t[1] - t[0])
    return info


def certificates():
    certs = []
    files = sorted(set(glob.glob(f"{PKI}/*.crt") + glob.glob("/etc/kubernetes/pki/*.crt")
                       + glob.glob("/etc/kubernetes/pki/etcd/*.crt")))
    for path in files:
        rc, stdout, _ = run(["openssl", "x509", "-noout", "-enddate", "-subject", "-nameopt", "RFC2253",
                             "-in", path])
        if rc != 0:
            continue
        end = re.search(r"notAfter=(.*)", stdout).group(1).strip()
        subject = re.search(r"subject=(.*)", stdout)
        certs.append({"path": path, "notAfter": calendar.timegm(time.strptime(end, "%b %d %H:%M:%S %Y %Z")),
                      "subject": subject.group(1).strip() if subject else ""})
    return certs


def haproxy():
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(HAPROXY_SOCKET)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
    except OSError as err:
        return {"error": str(err)}
    lines = data.decode().splitlines()
    head = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(head, line.split(","))) for line in lines[1:] if line]
    return {"servers": [{"backend": r["pxname"], "server": r["svname"], "status": r["status"],
                         "checkStatus": r.get("check_status", "")}
                        for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")]}


def metrics():
    """Prometheus text: backups (members) and certificate expiry."""
    lines = []

    def gauge(name, help_, samples):
        if samples:
            lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} gauge"])
            lines.extend(f"{name}{labels} {value:.0f}" for labels, value in samples)
    if os.path.exists(BACKUP_SCRIPT):
        b = backups()
        gauge("hakube_etcd_backup_last_success_timestamp_seconds",
              "When the newest verified snapshot on this member was taken (0: none).",
              [("", b.get("newestTime", 0))])
        gauge("hakube_etcd_backup_interval_seconds", "The backup timer's period.",
              [("", b["intervalSeconds"])] if "intervalSeconds" in b else [])
        if "offsite" in b:
            gauge("hakube_etcd_backup_offsite_last_success_timestamp_seconds",
                  "When this member last copied a snapshot off-host, read back and checked (0: never; the "
                  "leader copies, so the newest of all members counts).", [("", b["offsite"].get("time", 0))])
    gauge("hakube_certificate_expiry_timestamp_seconds", "When each certificate on this node expires.",
          [(f'{{path="{c["path"]}"}}', c["notAfter"]) for c in certificates()])
    return "\n".join(lines) + "\n"


def serve_one(sources):
    """One HTTP/1.0 exchange on stdin/stdout (the accepted connection)."""
    peer = os.environ.get("REMOTE_ADDR", "")
    try:
        allowed = any(ipaddress.ip_address(peer) in ipaddress.ip_network(src, strict=False) for src in sources)
    except ValueError:
        allowed = False
    request = sys.stdin.buffer.readline(8192).decode("latin-1")
    while sys.stdin.buffer.readline(8192).strip():
        pass                                    # the headers: not needed
    if not allowed:
        status, body = "403 Forbidden", "not a monitoring source of this stack\n"
    elif request.split()[:2] != ["GET", "/metrics"]:
        status, body = "404 Not Found", "GET /metrics\n"
    else:
        status, body = "200 OK", metrics()
    data = body.encode()
    sys.stdout.buffer.write((f"HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                             f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data)
    sys.stdout.buffer.flush()


def main():
    if "--prometheus" in sys.argv:
        serve_one([s for s in os.environ.get("HAKUBE_METRICS_SOURCES", "").split(",") if s])
        return
    out = {"host": socket.gethostname(), "time": time.time()}
    if os.path.exists(ETCD_CONFIG):
        out["etcd"] = etcd()
    out["certificates"] = certificates()
    if os.path.exists(HAPROXY_SOCKET):
        out["haproxy"] = haproxy()
    rc, stdout, _ = run(["ip", "-o", "-4", "addr", "show"])
    out["addresses"] = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", stdout)
    print(json.dumps(out))


main()
