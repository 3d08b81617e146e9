# Every node of the stack registered and Ready.
export KUBECONFIG=/etc/kubernetes/admin.conf
for ((i = 1; i <= 120; i++)); do
  ready=$(kubectl get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l)
  [ "$ready" -ge "$EXPECTED_NODES" ] && { kubectl get nodes -o wide; exit 0; }
  sleep 5
done
echo "only $ready of $EXPECTED_NODES nodes Ready after 10 minutes:" >&2
kubectl get nodes -o wide >&2 || true
kubectl -n kube-system get pods -o wide >&2 || true
exit 1
