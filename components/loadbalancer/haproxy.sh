# Install haproxy.cfg from stdin: checked with `haproxy -c` before it replaces
# anything; on change, a reload (the master hands the listeners to new workers,
# established connections finish on the old ones); started if not running.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked_stdin "$work/haproxy.cfg" haproxy -c -f
# HAProxy binds the VIP before keepalived gives this host the address (on a
# backup, and on any load balancer until its keepalived is master).
echo "net.ipv4.ip_nonlocal_bind = 1" >"$work/sysctl.conf"
put_file "$work/sysctl.conf" /etc/sysctl.d/90-hakube-lb.conf 0644 root:root
sysctl -q -w net.ipv4.ip_nonlocal_bind=1
# shellcheck disable=SC2034 # read by ensure_running (common.sh)
CHANGED=0   # a sysctl change alone is no reason to reload haproxy
install -d -m 0755 /run/haproxy
put_file "$work/haproxy.cfg" /etc/haproxy/haproxy.cfg 0644 root:root
ensure_running haproxy
for ((i = 1; i <= 15; i++)); do
  if ss -Hltn "sport = :$API_PORT" | grep -q .; then
    echo "haproxy listens on :$API_PORT"
    exit 0
  fi
  sleep 1
done
echo "haproxy does not listen on :$API_PORT" >&2
journalctl -u haproxy -n 30 --no-pager -o cat >&2 || true
exit 1
