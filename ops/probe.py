"""What `make status` reads on one node, run there as root (`sudo -n
python3 -`, this file on stdin; every node has python3: cloud-init is
written in it). Reads only; prints one JSON object. Each part is what the
node has: an etcd member's status, alarms, quota and backups; the
certificates in /etc/etcd/pki and /etc/kubernetes/pki; HAProxy's view of its
backends (its stats socket); the IPv4 addresses (the VIP's holder)."""
import calendar
import glob
import json
import os
import re
import socket
import subprocess
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
        m = re.search(r"^BACKUP_DIR=(\S+)$", open(BACKUP_SCRIPT).read(), re.M)
    except OSError:
        return {"enabled": False}
    folder = m.group(1).strip("'") if m else "/var/backups/etcd"
    snaps = sorted((os.stat(p).st_mtime, os.stat(p).st_size, p) for p in glob.glob(f"{folder}/etcd-*.db"))
    info = {"enabled": True, "dir": folder, "count": len(snaps)}
    m = re.search(r"^OFFSITE_URL=(\S+)$", open(BACKUP_SCRIPT).read(), re.M)
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


def main():
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
