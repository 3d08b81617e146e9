# The off-host copy of this member's snapshots (etcd.backup.offsite): rclone
# (Debian's package), its config for the remote on stdin (root, 0600: it holds
# the remote's credentials), and the remote checked from here before any
# snapshot counts on it: wrong credentials or an unreachable store fail this
# `pulumi up`, not a backup at 3 a.m. Nothing is logged from stdin.
# OFFSITE=0 (etcd.backup.offsite not set): no config here; one left from
# when it was set goes. Copies already on the remote stay there.
if [ "$OFFSITE" = 0 ]; then
  cat >/dev/null
  if [ -e "$OFFSITE_DIR" ]; then
    rm -rf "$OFFSITE_DIR"
    echo "off-host backups off on $(hostname): $OFFSITE_DIR removed (copies on the remote are kept)"
  fi
  exit 0
fi
if ! command -v rclone >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q rclone >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q rclone >/dev/null; }
  echo "installed $(rclone version | head -1)"
fi
install -d -m 0700 -o root -g root "$OFFSITE_DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# stdin: the rclone config, then (behind a line "#=== known_hosts") the pinned host keys
cat >"$work/all"
sed '/^#=== known_hosts$/,$d' "$work/all" >"$work/rclone.conf"
sed '1,/^#=== known_hosts$/d' "$work/all" >"$work/known_hosts"
put_file "$work/rclone.conf" "$OFFSITE_DIR/rclone.conf" 0600 root:root
put_file "$work/known_hosts" "$OFFSITE_DIR/known_hosts" 0644 root:root
rc=(rclone --config "$OFFSITE_DIR/rclone.conf" --contimeout 10s --timeout 60s --retries 2 --low-level-retries 2)
if ! out=$("${rc[@]}" mkdir "offsite:$OFFSITE_PATH" 2>&1) || ! out=$("${rc[@]}" lsf --max-depth 1 "offsite:$OFFSITE_PATH" 2>&1 >/dev/null); then
  echo "the off-host store does not answer from $(hostname) (etcd.backup.offsite, remote ${OFFSITE_URL}):" >&2
  grep -v '^$' <<<"$out" | tail -5 >&2
  echo "check the remote's options and the secret hakube:etcdOffsiteSecrets, then run pulumi up again" >&2
  exit 1
fi
echo "off-host store ${OFFSITE_URL} answers from $(hostname)"
