# On an etcd member: the namespace the API wrote is in this etcd cluster.
key="/registry/namespaces/$CHECK_NAMESPACE"
for ((i = 1; i <= 15; i++)); do
  if [ -n "$(ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc get "$key" --keys-only 2>/dev/null)" ]; then
    echo "$key found in the external etcd"
    exit 0
  fi
  sleep 2
done
echo "$key not found in the external etcd: the apiservers write somewhere else" >&2
exit 1
