# Restore, 0/4 (every member): the directory the snapshot is copied into. The
# provider's SFTP copy leaves the file 0644 as the admin user, and a snapshot
# holds every Secret of the cluster: so it lands in a 0700 directory of that
# user, where nobody else can reach it until stop.sh moves it to its 0700 restore dir.
install -d -m 0755 "$(dirname "$UPLOAD_DIR")"
install -d -m 0700 -o "$UPLOAD_USER" -g "$(id -gn "$UPLOAD_USER")" "$UPLOAD_DIR"
echo "upload directory $UPLOAD_DIR ready on $(hostname)"
