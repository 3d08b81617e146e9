# Shared helpers of every hakube step (prepended to each step script).
CHANGED=0
# put_file SRC DEST MODE OWNER:GROUP -- install SRC at DEST atomically, only if
# content, mode or owner differ; sets CHANGED=1 when it writes.
put_file() {
  local src=$1 dest=$2 mode=$3 owner=$4
  if [ -f "$dest" ] && cmp -s "$src" "$dest" \
     && [ "$(stat -c '%a %U:%G' "$dest")" = "${mode#0} $owner" ]; then
    return 0
  fi
  install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$src" "$dest.hakube-new"
  mv -f "$dest.hakube-new" "$dest"
  echo "wrote $dest"
  CHANGED=1
}
# ensure_running UNIT -- enabled; started when stopped, reloaded when this
# step changed its config (CHANGED=1), left alone otherwise.
ensure_running() {
  local unit=$1
  systemctl is-enabled --quiet "$unit" || systemctl enable --quiet "$unit"
  if ! systemctl is-active --quiet "$unit"; then
    systemctl start "$unit"
    echo "$unit started"
  elif [ "$CHANGED" = 1 ]; then
    systemctl reload "$unit"
    echo "$unit reloaded"
  else
    echo "$unit unchanged"
  fi
}
