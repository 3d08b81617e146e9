# Restore, undone: the delete of a restore step, run when the stack no longer
# names this snapshot (the key removed, or another snapshot named). Where
# this snapshot's restore finished ($RESTORE_DIR/$RESTORE_SHA.done), there is
# nothing to undo. Where it did not (a run failed half-way and the key was
# dropped), each part puts back what it took, in the engine's reverse order:
#   PART=data       the pre-restore data dir back in place (etcd stopped first)
#   PART=stop       the backup timer and etcd running again
#   PART=apiserver  the parked kube-apiserver manifest back (kubelet starts it)
marker="$RESTORE_DIR/$RESTORE_SHA.done"
short=${RESTORE_SHA:0:12}
case "$PART" in
  data)
    previous=$(cat "$RESTORE_DIR/$RESTORE_SHA.previous" 2>/dev/null || true)
    if [ -e "$marker" ] || [ -z "$previous" ] || [ ! -d "$previous" ]; then
      echo "restore of $short on $(hostname): no data to put back"
      exit 0
    fi
    systemctl stop etcd
    mv "$ETCD_DATA_DIR" "$ETCD_DATA_DIR.abandoned-$short-$(date -u +%Y%m%dT%H%M%SZ)"
    mv "$previous" "$ETCD_DATA_DIR"
    rm -f "$RESTORE_DIR/$RESTORE_SHA.previous"
    echo "restore of $short abandoned on $(hostname): the data dir from before it is back"
    ;;
  stop)
    # (no waiting: a member of a stopped cluster is ready only once a quorum runs,
    # and the engine runs these deletes side by side, one per member)
    systemctl start --no-block etcd
    if systemctl cat hakube-etcd-backup.timer >/dev/null 2>&1; then systemctl start hakube-etcd-backup.timer; fi
    rm -f "$RESTORE_DIR/$RESTORE_SHA.db" "$RESTORE_UPLOAD"
    if [ -e "$marker" ]; then echo "restore of $short on $(hostname): finished, etcd running"
    else echo "restore of $short abandoned on $(hostname): etcd and its backups running again"; fi
    ;;
  apiserver)
    manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
    parked=/etc/kubernetes/hakube/kube-apiserver.yaml.restore
    if [ -e "$parked" ]; then
      mv "$parked" "$manifest"
      echo "kube-apiserver back on $(hostname) (restore of $short abandoned)"
    else
      echo "kube-apiserver on $(hostname): nothing parked"
    fi
    ;;
  *)
    echo "abandon.sh: PART must be data, stop or apiserver, not '$PART'" >&2
    exit 1
    ;;
esac
