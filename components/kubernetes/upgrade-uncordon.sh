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
uncordon_when_ready "$NODE" "$K8S_VERSION" "$DRAINED_MARK"
