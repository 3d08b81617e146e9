# Start this member without blocking: with Type=notify a member reports ready
# only once a quorum exists, so every member must be starting before any can
# finish. Then wait (bounded) until this member serves.
if systemctl is-active --quiet etcd; then
  echo "etcd already running on $(hostname)"
else
  systemctl start --no-block etcd
fi
for ((i = 1; i <= WAIT_TRIES; i++)); do
  if etcdctl_hc endpoint health >/dev/null 2>&1; then
    echo "etcd member $(hostname) is serving"
    exit 0
  fi
  sleep 2
done
echo "etcd on $(hostname) did not become healthy in $((WAIT_TRIES * 2))s" >&2
journal_tail 40
exit 1
