# Worker $NODE after its upgrade to $K8S_VERSION: if the upgrade drained it
# ($DRAINED_MARK), uncordoned once it is Ready at that version. A worker
# hakube did not drain (a new one, one already at the version, one cordoned
# by hand) is left as it is.
export KUBECONFIG=/etc/kubernetes/admin.conf
k() { kubectl --request-timeout=20s "$@"; }
if [ -z "$(k get node "$NODE" -o jsonpath="{.metadata.annotations.${DRAINED_MARK//./\\.}}")" ]; then
  echo "$NODE was not drained for an upgrade: left as it is"
  exit 0
fi
for ((i = 1; i <= 60; i++)); do
  state=$(k get node "$NODE" -o jsonpath='{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  [ "$state" = "v$K8S_VERSION True" ] && break
  sleep "${POLL_SECONDS:-5}"
done
[ "$state" = "v$K8S_VERSION True" ] || { echo "$NODE not Ready at v$K8S_VERSION after 300 s (now: $state); it stays cordoned" >&2; exit 1; }
k uncordon "$NODE"
k annotate node "$NODE" "$DRAINED_MARK-" >/dev/null
echo "$NODE uncordoned at v$K8S_VERSION"
