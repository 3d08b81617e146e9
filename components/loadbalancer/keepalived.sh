# Install keepalived.conf from stdin (it holds the VRRP secret: root only),
# checked with `keepalived -t` first; reload on change, start if not running.
umask 077
if ! command -v keepalived >/dev/null; then
  # a load balancer made before keepalived held the VIP of a single one
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q keepalived >/dev/null
  echo "installed keepalived"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked_stdin "$work/keepalived.conf" keepalived -t -f
put_file "$work/keepalived.conf" /etc/keepalived/keepalived.conf 0600 root:root
ensure_running keepalived
