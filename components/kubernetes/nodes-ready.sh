# Every node the stack configures ($NODES) registered and Ready, by name (a
# node the stack is removing may still be listed until its VM goes).
export KUBECONFIG=/etc/kubernetes/admin.conf
for ((i = 1; i <= 120; i++)); do
  listed=$(kubectl get nodes --no-headers 2>/dev/null || true)
  # shellcheck disable=SC2086 # a list of names
  missing=$(not_ready "$listed" $NODES)
  if [ -z "$missing" ]; then
    kubectl get nodes -o wide
    exit 0
  fi
  sleep "${POLL_SECONDS:-5}"
done
echo "not Ready after $((120 * ${POLL_SECONDS:-5})) s:$missing" >&2
kubectl get nodes -o wide >&2 || true
kubectl -n kube-system get pods -o wide >&2 || true
exit 1
