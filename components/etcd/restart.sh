# Rolling restart of this member after its certs, config, unit or binary
# changed (RESTART_PAYLOAD: their digest). Runs on create and on every update
# of its step, and decides from the member itself: the payload this member
# was last restarted for is kept in a marker; a member with no marker that
# started after its files last changed already runs them (a fresh member).
# Never costs quorum: refuses to start while the cluster is degraded, and
# returns only once the whole cluster is healthy again, this member serving
# the configured version.
marker=/var/lib/hakube/etcd-restart.payload
if [ "$(cat "$marker" 2>/dev/null)" = "$RESTART_PAYLOAD" ]; then
  echo "etcd on $(hostname) already runs payload $RESTART_PAYLOAD"
  exit 0
fi
record() { install -d -m 0755 "$(dirname "$marker")"; printf '%s\n' "$RESTART_PAYLOAD" >"$marker"; }
if [ ! -e "$marker" ] && systemctl is-active --quiet etcd; then
  started=$(date -d "$(systemctl show -p ActiveEnterTimestamp --value etcd)" +%s)
  newest=$(stat -c %Y /etc/etcd/etcd.conf.yml /etc/systemd/system/etcd.service /usr/local/bin/etcd \
           "$PKI_DIR"/*.crt "$PKI_DIR"/*.key | sort -n | tail -1)
  if [ "$started" -ge "$newest" ]; then
    record
    echo "etcd on $(hostname) started after its files last changed: nothing to restart"
    exit 0
  fi
fi
if ! wait_cluster_healthy "$WAIT_TRIES"; then
  echo "not restarting etcd on $(hostname): the cluster is not healthy, and taking a member down could lose quorum" >&2
  exit 1
fi
t0=$(date +%s%3N)
systemctl restart etcd
if ! wait_cluster_healthy "$WAIT_TRIES"; then
  journal_tail 40
  exit 1
fi
running=$(etcdctl_hc endpoint status -w json | etcd_decide version || true)
if [ "$running" != "$ETCD_VERSION" ]; then
  echo "etcd on $(hostname) restarted but serves $running, not $ETCD_VERSION" >&2
  exit 1
fi
record
echo "etcd $running on $(hostname) restarted in $(($(date +%s%3N) - t0)) ms; cluster healthy"
