# Helpers of hakube's etcd steps (after steps/common.sh).
# etcdctl with the healthcheck-client cert; ENDPOINTS defaults to this member.
etcdctl_hc() {
  ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints="${ENDPOINTS:-https://127.0.0.1:2379}" \
    --cacert="$PKI_DIR/ca.crt" --cert="$PKI_DIR/healthcheck-client.crt" \
    --key="$PKI_DIR/healthcheck-client.key" --dial-timeout=2s --command-timeout=5s "$@"
}
# expected_members -> "name=peerURL" lines, sorted
expected_members() { tr ',' '\n' <<<"$ETCD_INITIAL_CLUSTER" | sort; }
# started_members -> "name=peerURL" lines of started members, sorted
started_members() {
  etcdctl_hc member list | awk -F', ' '$2 == "started" { print $3 "=" $4 }' | sort
}
# wait_cluster_healthy TRIES -- every configured member healthy and listed
wait_cluster_healthy() {
  local tries=$1 i why=""
  for ((i = 1; i <= tries; i++)); do
    if why=$(ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc endpoint health 2>&1); then
      if [ "$(started_members 2>/dev/null)" = "$(expected_members)" ]; then
        return 0
      fi
      why="member list differs from the configured members:
  want: $(expected_members | paste -sd' ')
  have: $(started_members 2>&1 | paste -sd' ')"
    fi
    sleep 2
  done
  echo "etcd cluster not healthy after $((tries * 2))s: $why" >&2
  return 1
}
journal_tail() {
  echo "--- journal of etcd on $(hostname) ---" >&2
  journalctl -u etcd -n "${1:-30}" --no-pager -o cat >&2 2>/dev/null || true
}
