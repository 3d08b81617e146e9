# $NODE leaves the stack (this runs as the delete of its drain step, on the
# first control plane, before the node's reset and before its VM goes):
# cordon it and evict its pods (daemonsets stay; emptyDir data goes, as it
# would with the VM). Talks to this control plane's own apiserver, not the
# VIP: on `pulumi destroy` the load balancers may already be gone.
# A drain that cannot finish (a PodDisruptionBudget, the API down) fails the
# delete: the VM stays, and the next `pulumi up` tries again.
export KUBECONFIG=/etc/kubernetes/admin.conf
k() { kubectl --server "https://$API_ADDRESS:$API_PORT" --request-timeout=20s "$@"; }
if ! out=$(k get node "$NODE" -o name 2>&1); then
  if grep -q NotFound <<<"$out"; then
    echo "$NODE is not registered: nothing to drain"
    exit 0
  fi
  echo "cannot reach the API on $(hostname) to drain $NODE: $out" >&2
  echo "fix the API and run \`pulumi up\` again; to drop $NODE without draining it," >&2
  echo "remove its drain step from the state: pulumi state delete <urn of $DRAIN_STEP>" >&2
  exit 1
fi
if ! k drain "$NODE" --ignore-daemonsets --delete-emptydir-data --force --timeout="${DRAIN_TIMEOUT}s"; then
  echo "$NODE could not be drained within ${DRAIN_TIMEOUT}s (see above: a PodDisruptionBudget or a" >&2
  echo "pod that does not stop); its VM is kept. Fix that and run \`pulumi up\` again." >&2
  exit 1
fi
echo "$NODE drained"
