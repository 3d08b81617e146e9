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
# checked_stdin FILE CHECK... -- stdin into FILE, which `CHECK... FILE` (the
# format's own validator) must accept before anything is replaced; otherwise
# the step fails with the validator's words and the running file stays.
checked_stdin() {
  local file=$1 out
  shift
  cat >"$file"
  if ! out=$("$@" "$file" 2>&1); then
    echo "$1 rejected the new $(basename "$file"); the one in use is unchanged:" >&2
    echo "$out" >&2
    exit 1
  fi
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
# enable_and_start UNIT -- enabled and running; restarted (after a
# daemon-reload) when this step wrote its files (CHANGED=1), else started
# only if it was not running. For timers and sockets, whose restart
# interrupts nothing; services with a reload use ensure_running.
enable_and_start() {
  local unit=$1
  if [ "$CHANGED" = 1 ]; then
    systemctl daemon-reload
    systemctl enable --quiet "$unit"
    systemctl restart "$unit"
  else
    systemctl is-enabled --quiet "$unit" || systemctl enable --quiet "$unit"
    systemctl is-active --quiet "$unit" || systemctl start "$unit"
  fi
}
# not_ready LISTED NAME... -- the NAMEs not "Ready" in LISTED (the output of
# `kubectl get nodes --no-headers`), each behind a space; empty when all are.
not_ready() {
  local listed=$1 node out=""
  shift
  for node in "$@"; do
    awk -v n="$node" '$1 == n && $2 == "Ready" { found = 1 } END { exit !found }' <<<"$listed" ||
      out="$out $node"
  done
  echo "$out"
}

# kubeadm_cgroup_args -> the flags kubeadm init/join needs on this node's
# cgroups, or a refusal naming the key. kubelet 1.35+ refuses cgroup v1 unless
# its configuration says failCgroupV1: false, and kubeadm's SystemVerification
# then still fails: hakube renders the one and skips the other only where
# hakube:kubernetes.allowCgroupV1 says so, and only on a v1 node.
kubeadm_cgroup_args() {
  local fs
  fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo unknown)
  [ "$fs" = cgroup2fs ] && return 0
  if [ "${ALLOW_CGROUP_V1:-}" != 1 ]; then
    echo "$(hostname) runs cgroup v1 (/sys/fs/cgroup is $fs, not cgroup2fs): kubelet 1.35 and later refuse" >&2
    echo "it, and kubeadm was not run. Boot the node with cgroup v2 (Ubuntu 22.04 and later do by default;" >&2
    echo "systemd.unified_cgroup_hierarchy=1 on the kernel command line), or set" >&2
    echo "hakube:kubernetes.allowCgroupV1: true and run pulumi up again." >&2
    return 1
  fi
  echo "--ignore-preflight-errors=$CGROUP_V1_PREFLIGHT"
}

# kubeadm_reset: `kubeadm reset -f` with etcd left alone, its log in
# /var/log/hakube. hakube's etcd is external and its membership is the etcd
# steps' job; kubeadm's remove-etcd-member phase, finding no local etcd in
# the cluster's config, falls back to a stacked member's default data dir,
# polls 60 s for etcd pods that do not exist, then empties /var/lib/etcd
# (cmd/kubeadm/app/cmd/phases/reset/removeetcdmember.go:59-116, v1.36.3;
# 61 s of every control plane's reset, measured in the lab).
kubeadm_reset() {
  install -d -m 0700 /var/log/hakube
  kubeadm reset -f --skip-phases=remove-etcd-member >/var/log/hakube/kubeadm-reset.log 2>&1
}

# kubeadm_reset_keeping FILE...: `kubeadm reset -f` (a half-done init or
# join), keeping the named files: reset empties /etc/kubernetes/pki, where
# hakube's own steps put the etcd client certs and a control plane's shared
# certs, and those steps would not run again to put them back.
kubeadm_reset_keeping() {
  local keep
  keep=$(mktemp -d)
  [ "$#" -eq 0 ] || tar -cf "$keep/keep.tar" --absolute-names "$@"
  kubeadm_reset || true
  [ "$#" -eq 0 ] || tar -xpf "$keep/keep.tar" --absolute-names
  rm -rf "$keep"
}

# uncordon_when_ready NODE VERSION MARK -- wait (300 s) until NODE is Ready
# with a kubelet at vVERSION; then, if hakube drained it for the upgrade (its
# MARK annotation), uncordon it and drop the mark. A node cordoned by hand
# has no mark and stays cordoned. Uses the caller's `k` (kubectl).
uncordon_when_ready() {
  local node=$1 version=$2 mark=$3 i state=""
  for ((i = 1; i <= 60; i++)); do
    state=$(k get node "$node" -o jsonpath='{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    [ "$state" = "v$version True" ] && break
    sleep "${POLL_SECONDS:-5}"
  done
  if [ "$state" != "v$version True" ]; then
    echo "$node not Ready at v$version after 300 s (now: $state); it stays cordoned" >&2
    return 1
  fi
  if [ -n "$(k get node "$node" -o jsonpath="{.metadata.annotations.${mark//./\\.}}")" ]; then
    k uncordon "$node"
    k annotate node "$node" "$mark-" >/dev/null
    echo "$node uncordoned at v$version"
  fi
}
