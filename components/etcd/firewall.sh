# The ruleset on stdin guards 2379/2380; checked with `nft -c` first, applied
# atomically (its own table) when it changed or is not loaded.
work=$(mktemp)
trap 'rm -f "$work"' EXIT
cat >"$work"
if ! out=$(nft -c -f "$work" 2>&1); then
  echo "nft rejected the etcd ruleset:" >&2
  echo "$out" >&2
  exit 1
fi
put_file "$work" /etc/etcd/firewall.nft 0644 root:root
if [ "$CHANGED" = 1 ] || ! nft list table inet hakube_etcd >/dev/null 2>&1; then
  systemctl restart hakube-etcd-firewall.service
  echo "firewall rules applied"
else
  echo "firewall rules unchanged"
fi
