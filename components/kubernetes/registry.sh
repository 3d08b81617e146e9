# On an etcd member: the namespace the API wrote is in this etcd cluster; with
# encryption at rest ($ENCRYPTION: its provider), the Secret the API wrote is
# stored encrypted (etcd's value starts k8s:enc:<provider>:v1:<key>:) and its
# plain text ($CHECK_PROBE) appears nowhere in it: the seed's /registry check,
# extended to what an attacker with a copy of etcd would read.
key="/registry/namespaces/$CHECK_NAMESPACE"
found=""
for ((i = 1; i <= 15; i++)); do
  if [ -n "$(ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc get "$key" --keys-only 2>/dev/null)" ]; then
    found=1
    break
  fi
  sleep "${POLL_SECONDS:-2}"
done
if [ -z "$found" ]; then
  echo "$key not found in the external etcd: the apiservers write somewhere else" >&2
  exit 1
fi
echo "$key found in the external etcd"
[ -n "$ENCRYPTION" ] || exit 0
secret="/registry/secrets/$CHECK_NAMESPACE/$CHECK_SECRET"
value=$(mktemp)
trap 'rm -f "$value"' EXIT
ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc get "$secret" --print-value-only >"$value"
if [ ! -s "$value" ]; then
  echo "$secret not found in the external etcd" >&2
  exit 1
fi
if grep -aqF -- "$CHECK_PROBE" "$value"; then
  echo "$secret is stored in plain text: its value is readable in etcd (encryption at rest is not in effect)" >&2
  exit 1
fi
prefix=$(head -c 64 "$value" | tr -d '\0' | grep -aoE '^k8s:enc:[a-z0-9]+:v1:[a-z0-9-]+:' || true)
case "$prefix" in
  "k8s:enc:$ENCRYPTION:v1:"*) echo "$secret is stored encrypted (${prefix%:}); its plain text is nowhere in etcd" ;;
  *) echo "$secret is not stored with $ENCRYPTION (starts: $(head -c 24 "$value" | tr -cd '[:print:]'))" >&2; exit 1 ;;
esac
