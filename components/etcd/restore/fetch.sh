# Restore, 0/4 from the off-host store (every member): this member fetches
# the named snapshot with its own rclone remote (etcd.backup.offsite) and
# checks it against the sha256 the stack pins, before anything is stopped.
# Nothing happens where this snapshot's restore already completed.
marker="$RESTORE_DIR/$RESTORE_SHA.done"
if [ -e "$marker" ]; then echo "snapshot ${RESTORE_SHA:0:12} already restored on $(hostname)"; exit 0; fi
install -d -m 0700 -o root -g root "$RESTORE_DIR"
if [ ! -r "$OFFSITE_DIR/rclone.conf" ]; then
  echo "$(hostname) has no off-host remote ($OFFSITE_DIR/rclone.conf): etcd.backup.offsite must be set" >&2
  exit 1
fi
umask 077
part="$RESTORE_UPLOAD.part"
trap 'rm -f "$part"' EXIT
t0=$(date +%s%3N)
if ! out=$(rclone --config "$OFFSITE_DIR/rclone.conf" --contimeout 10s --timeout 300s --retries 3 \
             copyto "offsite:$OFFSITE_PATH/$RESTORE_NAME" "$part" 2>&1); then
  echo "could not fetch $OFFSITE_URL/$RESTORE_NAME on $(hostname):" >&2
  tail -5 <<<"$out" >&2
  exit 1
fi
got=$(sha256sum "$part" | cut -d' ' -f1)
if [ "$got" != "$RESTORE_SHA" ]; then
  echo "$OFFSITE_URL/$RESTORE_NAME has sha256 $got, not the $RESTORE_SHA etcd.restore.sha256 names: not restoring" >&2
  exit 1
fi
mv -f "$part" "$RESTORE_UPLOAD"
echo "fetched $OFFSITE_URL/$RESTORE_NAME on $(hostname) ($(stat -c %s "$RESTORE_UPLOAD") bytes, sha256 ok) in $(($(date +%s%3N) - t0)) ms"
