"""What `make review` says of etcd's scripts (steps/plan.py Note)."""
from __future__ import annotations

from ..steps.plan import MEMBERS_REMOVED, Note

NOTES = {
    "restore/stop.sh": Note(danger="etcd is stopped on {nodes} for a restore: the API is unavailable until the "
                                   "restore's start"),
    "restore/data.sh": Note(danger="each member's data is replaced by the snapshot on {nodes} (the old data dir "
                                   "is kept aside); every write after the snapshot is lost"),
    "membership.sh": Note(danger="members leave the etcd cluster (member remove, on {nodes})",
                          danger_when=MEMBERS_REMOVED,
                          check="member removals: a healthy cluster, and no more removed at once than it can lose"),
    "restart.sh": Note(restarts="etcd",
                       check="each restart waits for a healthy cluster first and returns when it is healthy again"),
    # where it installs etcd itself, not where a control plane's etcdctl step runs it
    "install.sh": Note(check="etcd's upgrade policy against the live cluster version (patches freely, one minor "
                             "at a time, never down, the floor patch before the next minor)", check_own_only=True),
    "start.sh": Note(check="a new or rebuilt member joins only a healthy cluster with quorum, as a learner"),
    "health.sh": Note(check="every member healthy, no alarm"),
}
