# hakube: maintenance of this etcd member, run by hakube-etcd-maintenance.service
# (its timer), or by hand.
#  1. Defragment this member when the share of its database file that is not
#     in use passes DEFRAG_THRESHOLD percent (and the file is at least
#     DEFRAG_MIN_BYTES), holding etcd's own lock `hakube-defrag` so members
#     defragment one at a time: a member serves nothing while it defragments.
#  2. Surface alarms: an active alarm (NOSPACE: writes refused) fails the unit
#     with what to do, so it shows in `systemctl --failed` and the journal.
# `hakube-etcd-maintenance --defrag-now` defragments this member at once,
# without the lock (which needs a write, refused under NOSPACE): run it on
# one member after another.
ENDPOINTS=https://127.0.0.1:2379

if ! systemctl is-active --quiet etcd; then
  echo "etcd is not running on $(hostname): no maintenance" >&2
  exit 1
fi
stat_json() { etcdctl_hc endpoint status -w json; }
field() { grep -o "\"$1\":[0-9]*" <<<"$2" | head -1 | cut -d: -f2; }

defrag_now() {
  local before after t0 t1
  before=$(field dbSize "$(stat_json)")
  t0=$(date +%s%3N)
  echo "defrag start $t0 on $(hostname): $before bytes"
  etcdctl_hc --command-timeout=30m defrag >/dev/null
  t1=$(date +%s%3N)
  after=$(field dbSize "$(stat_json)")
  echo "defrag done $t1 on $(hostname): $before -> $after bytes in $((t1 - t0)) ms"
}

if [ "${1:-}" = --defrag-now ]; then
  defrag_now
  exit 0
fi
if [ "${1:-}" = --locked ]; then
  # Inside the lock: the rest of the cluster must be whole before this member pauses.
  if ! wait_cluster_healthy 30; then
    echo "not defragmenting $(hostname): the cluster is not healthy" >&2
    exit 1
  fi
  defrag_now
  exit 0
fi

status=$(stat_json)
size=$(field dbSize "$status") in_use=$(field dbSizeInUse "$status")
if [ -z "$size" ] || [ -z "$in_use" ] || [ "$size" -eq 0 ]; then
  echo "cannot read this member's database size from: $status" >&2
  exit 1
fi
pct=$(((size - in_use) * 100 / size))
echo "database $size bytes, $in_use in use: $pct% reclaimable (defragment from $DEFRAG_THRESHOLD%, $DEFRAG_MIN_BYTES bytes)"
rc=0
if [ "$size" -ge "$DEFRAG_MIN_BYTES" ] && [ "$pct" -ge "$DEFRAG_THRESHOLD" ]; then
  if ! ENDPOINTS=$ETCD_ENDPOINTS etcdctl_hc --command-timeout=1h lock hakube-defrag -- "$0" --locked; then
    echo "defragmentation of $(hostname) did not run (the lock, or the cluster's health)" >&2
    rc=1
  fi
fi
say_alarms || rc=1
exit "$rc"
