# Before this member first starts (its data dir holds no WAL yet): how long a
# small write that must reach the disk takes on the data dir's filesystem.
# etcd's hardware guidance: WAL fsync under 10 ms (99th percentile); a slow
# disk shows up as leader elections and stalled writes. Measured with dd
# (oflag=dsync, $FSYNC_COUNT writes of 2300 bytes, the block size of etcd's own
# fio recipe): an average per synced write, not a percentile. MODE warn: said
# on stderr, the start goes on; refuse: this step fails and etcd does not
# start (hakube:etcd.tuning.fsyncCheck). A member with data is not measured.
if compgen -G "$ETCD_DATA_DIR/member/wal/*.wal" >/dev/null; then
  echo "$(hostname): etcd has data in $ETCD_DATA_DIR: disk not measured again"
  exit 0
fi
install -d -m 0700 -o etcd -g etcd "$ETCD_DATA_DIR"
probe="$ETCD_DATA_DIR/.hakube-fsync-probe"
trap 'rm -f "$probe"' EXIT
start=$(date +%s%N)
dd if=/dev/zero of="$probe" bs=2300 count="$FSYNC_COUNT" oflag=dsync status=none
elapsed_us=$((($(date +%s%N) - start) / 1000))
avg_us=$((elapsed_us / FSYNC_COUNT))
avg=$(printf '%d.%03d' $((avg_us / 1000)) $((avg_us % 1000)))
if [ "$avg_us" -le $((FSYNC_LIMIT_MS * 1000)) ]; then
  echo "$(hostname): a synced write to $ETCD_DATA_DIR takes $avg ms on average (etcd wants under $FSYNC_LIMIT_MS ms)"
  exit 0
fi
msg="$(hostname): a synced write to $ETCD_DATA_DIR takes $avg ms on average, over etcd's $FSYNC_LIMIT_MS ms: expect slow writes and leader elections (a faster disk, or a dedicated one for the data dir)"
if [ "$MODE" = refuse ]; then
  echo "$msg. Not starting etcd (hakube:etcd.tuning.fsyncCheck: refuse; warn lets it start)." >&2
  exit 1
fi
echo "warning: $msg" >&2
