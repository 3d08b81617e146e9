# The CNI, from its pinned manifest, with the pod subnet set; `kubectl apply`
# makes a re-run a no-op.
export KUBECONFIG=/etc/kubernetes/admin.conf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL --retry 5 --connect-timeout 15 -o "$work/cni.yaml" "$CNI_URL" || {
  echo "cannot fetch the $CNI_PLUGIN manifest $CNI_URL" >&2; exit 1; }
case "$CNI_PLUGIN" in
  calico)
    sed -i -E -e 's|^([[:space:]]*)# - name: CALICO_IPV4POOL_CIDR|\1- name: CALICO_IPV4POOL_CIDR|' \
      -e 's|^([[:space:]]*)#   value: "192.168.0.0/16"|\1  value: "'"$POD_SUBNET"'"|' "$work/cni.yaml" ;;
  flannel)
    sed -i -E 's|"Network": "[0-9./]+"|"Network": "'"$POD_SUBNET"'"|' "$work/cni.yaml" ;;
esac
grep -q "\"$POD_SUBNET\"" "$work/cni.yaml" || {
  echo "could not set the pod subnet $POD_SUBNET in $CNI_URL (has its format changed?)" >&2; exit 1; }
kubectl apply -f "$work/cni.yaml" | grep -v ' unchanged$' || true
echo "$CNI_PLUGIN applied (pod subnet $POD_SUBNET)"
