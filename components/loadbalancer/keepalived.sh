# Install keepalived.conf from stdin (it holds the VRRP secret: root only),
# checked with `keepalived -t` first; reload on change, start if not running.
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/keepalived.conf"
if ! out=$(keepalived -t -f "$work/keepalived.conf" 2>&1); then
  echo "keepalived -t rejected the new keepalived.conf; the running one is unchanged:" >&2
  echo "$out" >&2
  exit 1
fi
put_file "$work/keepalived.conf" /etc/keepalived/keepalived.conf 0600 root:root
ensure_running keepalived
