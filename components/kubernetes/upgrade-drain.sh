# Worker $NODE's turn in a Kubernetes upgrade to $K8S_VERSION: cordoned and
# drained here, on the first control plane, before its packages change (the
# next step, on the worker); a worker whose kubelet already runs
# $K8S_VERSION is left alone. A node drained for the upgrade is marked
# ($DRAINED_MARK), so the step after the upgrade uncordons it, and one
# cordoned by hand before stays cordoned.
export KUBECONFIG=/etc/kubernetes/admin.conf
k() { kubectl --request-timeout=20s "$@"; }
have=$(k get node "$NODE" -o jsonpath='{.status.nodeInfo.kubeletVersion}')
if [ "$have" = "v$K8S_VERSION" ]; then
  echo "$NODE already runs v$K8S_VERSION: not drained"
  exit 0
fi
if [ "$(k get node "$NODE" -o jsonpath='{.spec.unschedulable}')" != true ]; then
  k annotate node "$NODE" --overwrite "$DRAINED_MARK=$K8S_VERSION" >/dev/null
fi
if ! k drain "$NODE" --ignore-daemonsets --delete-emptydir-data --timeout="${DRAIN_TIMEOUT}s"; then
  echo "$NODE could not be drained within ${DRAIN_TIMEOUT}s (see above); it is not upgraded." >&2
  echo "Fix that and run \`pulumi up\` again: the upgrade goes on from this node." >&2
  exit 1
fi
echo "$NODE drained for its upgrade from $have to v$K8S_VERSION"
