# The ruleset on stdin guards 2379/2380; checked with `nft -c` first, applied
# atomically (its own table) when it changed, is not loaded, or REFRESH=1.
# Members the cluster still lists are admitted too, whether configured or
# not: a member leaving is cut off only after `member remove` (the refresh
# run after the membership step), a member joining is admitted before it starts.
if [ "${FIREWALL:-1}" = 0 ]; then
  # hakube:etcd.firewall false: this step takes its rules away (a step the
  # stack stopped registering would leave them in place, frozen at the old
  # membership: the real engine runs no script for it).
  cat >/dev/null
  if systemctl cat hakube-etcd-firewall.service >/dev/null 2>&1; then
    systemctl disable --quiet hakube-etcd-firewall.service 2>/dev/null || true
  fi
  if nft list table inet hakube_etcd >/dev/null 2>&1; then
    nft delete table inet hakube_etcd
    echo "firewall rules removed (hakube:etcd.firewall is false)"
  else
    echo "no hakube firewall rules (hakube:etcd.firewall is false)"
  fi
  rm -f /etc/etcd/firewall.nft
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked_stdin "$work/firewall.nft" nft -c -f
put_file "$work/firewall.nft" /etc/etcd/firewall.nft 0644 root:root
if [ "$CHANGED" = 1 ] || [ "${REFRESH:-0}" = 1 ] || ! nft list table inet hakube_etcd >/dev/null 2>&1; then
  # The file replaces the table in one transaction; the unit (which loads it
  # at boot) is not restarted: that would open a window and hit start limits.
  nft -f /etc/etcd/firewall.nft
  echo "firewall rules applied"
else
  echo "firewall rules unchanged"
fi
systemctl is-enabled --quiet hakube-etcd-firewall.service || systemctl enable --quiet hakube-etcd-firewall.service
systemctl is-active --quiet hakube-etcd-firewall.service || systemctl start hakube-etcd-firewall.service
if [ -x /usr/local/bin/etcdctl ] && systemctl is-active --quiet etcd; then
  for ip in $(ENDPOINTS=https://127.0.0.1:2379 member_table 2>/dev/null | awk '{ print $4 }' |
              sed -E 's|^https?://||; s|:[0-9]+$||'); do
    if ! nft get element inet hakube_etcd etcd_peers "{ $ip }" >/dev/null 2>&1; then
      nft add element inet hakube_etcd etcd_peers "{ $ip }"
      nft add element inet hakube_etcd etcd_clients "{ $ip }"
      echo "admitted $ip: still a member of the cluster, until the membership step removes it"
    fi
  done
fi
