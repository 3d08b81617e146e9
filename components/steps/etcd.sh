# Helpers of hakube's etcd steps and jobs (installed as etcd.sh; needs PKI_DIR).
# The configured membership comes from the step when it acts on it (start,
# membership, the cluster gate); steps that only gate on it read the cluster
# file the member's `cluster` step keeps, so their text does not change with it.
if [ -z "${ETCD_INITIAL_CLUSTER:-}" ] || [ -z "${ETCD_ENDPOINTS:-}" ]; then
  hakube_given_ic=${ETCD_INITIAL_CLUSTER:-} hakube_given_ep=${ETCD_ENDPOINTS:-}
  if [ -r /etc/etcd/hakube-cluster.env ]; then
    . /etc/etcd/hakube-cluster.env
  fi
  ETCD_INITIAL_CLUSTER=${hakube_given_ic:-${ETCD_INITIAL_CLUSTER:-}}
  ETCD_ENDPOINTS=${hakube_given_ep:-${ETCD_ENDPOINTS:-}}
fi
# etcdctl with the healthcheck-client cert; ENDPOINTS defaults to this member.
etcdctl_hc() {
  ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints="${ENDPOINTS:-https://127.0.0.1:2379}" \
    --cacert="$PKI_DIR/ca.crt" --cert="$PKI_DIR/healthcheck-client.crt" \
    --key="$PKI_DIR/healthcheck-client.key" --dial-timeout=2s --command-timeout=5s "$@"
}
# etcd_decide COMMAND ARGS < ANSWER: hakube's decisions from etcd's own
# answers (etcd.py, installed beside this file; components/steps/etcd_decide.py)
[ -n "${HAKUBE_LIB_DIR:-}" ] || HAKUBE_LIB_DIR=$(dirname -- "${BASH_SOURCE[0]:-.}")
etcd_decide() { python3 "$HAKUBE_LIB_DIR/etcd.py" "$@"; }
# expected_members -> "name=peerURL" lines of the configured members, sorted
expected_members() { tr ',' '\n' <<<"$ETCD_INITIAL_CLUSTER" | sort; }
# configured_peer_urls -> the configured members' peer URLs, one per line, sorted
configured_peer_urls() { expected_members | cut -d= -f2- | sort; }
# member_table -> "id status name peerURL learner" lines of the live membership,
# read from etcd's JSON answer (etcd.py members; a member is "started" once it
# has published its client URLs).
member_table() {
  local answer
  answer=$(etcdctl_hc member list -w json) || return
  etcd_decide members <<<"$answer"
}
# started_members -> "name=peerURL" lines of started voting members, sorted
started_members() { member_table | awk '$2 == "started" && $5 == "false" { print $3 "=" $4 }' | sort; }
# alarms -> the cluster's active alarms ("memberID:... alarm:NOSPACE" lines), if any
alarms() { ENDPOINTS="${ENDPOINTS:-$ETCD_ENDPOINTS}" etcdctl_hc alarm list 2>/dev/null || true; }
# say_alarms -- a loud, actionable message for each active alarm; returns 1 if any
say_alarms() {
  local active
  active=$(alarms)
  [ -z "$active" ] && return 0
  echo "etcd ALARM active: $(paste -sd' ' <<<"$active")" >&2
  if grep -q NOSPACE <<<"$active"; then
    echo "  NOSPACE: a member's database reached quota-backend-bytes; etcd refuses every write" >&2
    echo "  until space is freed and the alarm is disarmed: delete or compact what filled it," >&2
    echo "  defragment each member (hakube-etcd-maintenance does it one at a time), then" >&2
    echo "  'etcdctl alarm disarm' (or raise hakube:etcd.quotaBackendBytes and run pulumi up)." >&2
  fi
  return 1
}
# wait_cluster_healthy TRIES [exact] -- every configured member started, a
# voter and healthy. Members being removed may still be listed unless "exact".
wait_cluster_healthy() {
  local tries=$1 mode=${2:-} i why="" healthy have missing extra
  for ((i = 1; i <= tries; i++)); do
    healthy=0
    why=$(ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc endpoint health 2>&1) && healthy=1
    # An alarm does not clear by waiting: fail at once, naming it. (etcdctl
    # 3.5's health check reports alarms; 3.4's passes and does not look.)
    if { [ "$healthy" = 1 ] || grep -q "Active Alarm" <<<"$why"; } && [ -n "$(alarms)" ]; then
      echo "etcd cluster not healthy: an alarm is active" >&2
      say_alarms || true
      return 1
    fi
    if [ "$healthy" = 1 ]; then
      have=$(started_members 2>/dev/null)
      missing=$(comm -23 <(expected_members) <(printf '%s\n' "$have" | sed '/^$/d'))
      extra=$(member_table 2>/dev/null | awk '{ print $3 "=" $4 }' | sort | comm -13 <(expected_members) -)
      if [ -z "$missing" ] && { [ "$mode" != exact ] || [ -z "$extra" ]; }; then
        return 0
      fi
      why="member list differs from the configured members:
  want: $(expected_members | paste -sd' ')
  have: $(member_table 2>&1 | awk '{ print $3 "=" $4 " (" $2 (($5 == "true") ? ", learner" : "") ")" }' | paste -sd' ')"
    fi
    sleep 2
  done
  echo "etcd cluster not healthy after $((tries * 2))s: $why" >&2
  say_alarms || true
  return 1
}
# reconfig ETCDCTL-ARGS... -- a membership change (member add/remove/promote),
# retried while etcd refuses it as unsafe for now: with strict reconfig checks
# a member must have been connected to every voting peer for 5 s (a member
# that just joined or restarted is not yet), else "unhealthy cluster".
reconfig() {
  local i out
  for ((i = 1; i <= 30; i++)); do
    if out=$(etcdctl_hc "$@" 2>&1); then
      printf '%s\n' "$out"
      return 0
    fi
    grep -q "unhealthy cluster" <<<"$out" || break
    sleep 2
  done
  printf '%s\n' "$out" >&2
  return 1
}
# has_data -- this member has etcd data on disk (a WAL)
has_data() { compgen -G "$ETCD_DATA_DIR/member/wal/*.wal" >/dev/null; }
# start_with_config NAME FILE -- etcd's next starts read FILE instead of its
# config (a runtime drop-in NAME: gone at a reboot); `forget_config NAME FILE`
# takes both away again. For a join (the live membership) and a recovery
# (force-new-cluster): etcd reads no flags beside --config-file.
start_with_config() {
  local dropin=/run/systemd/system/etcd.service.d/$1.conf
  install -d "$(dirname "$dropin")"
  printf '[Service]\nExecStart=\nExecStart=/usr/local/bin/etcd --config-file %s\n' "$2" >"$dropin"
  systemctl daemon-reload
}
forget_config() {
  local dropin=/run/systemd/system/etcd.service.d/$1.conf
  if [ -e "$dropin" ]; then
    rm -f "$dropin" "$2"
    systemctl daemon-reload
  fi
}
journal_tail() {
  echo "--- journal of etcd on $(hostname) ---" >&2
  journalctl -u etcd -n "${1:-30}" --no-pager -o cat >&2 2>/dev/null || true
}
