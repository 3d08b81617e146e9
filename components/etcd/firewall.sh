# The ruleset on stdin guards 2379/2380; checked with `nft -c` first, applied
# atomically (its own table) when it changed or is not loaded.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked_stdin "$work/firewall.nft" nft -c -f
put_file "$work/firewall.nft" /etc/etcd/firewall.nft 0644 root:root
if [ "$CHANGED" = 1 ] || ! nft list table inet hakube_etcd >/dev/null 2>&1; then
  systemctl restart hakube-etcd-firewall.service
  echo "firewall rules applied"
else
  echo "firewall rules unchanged"
fi
