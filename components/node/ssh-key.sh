# The admin user's authorized_keys: exactly $KEY, the stack's admin key.
# Runs as the admin user, before hakube's helpers are on the node, over the
# connection the node accepts now (during a rotation: the previous key, which
# this removes; the session it came in on stays open). Every later step
# connects with $KEY.
umask 077
install -d -m 0700 "$HOME/.ssh"
file=$HOME/.ssh/authorized_keys
if [ -f "$file" ] && [ "$(cat "$file")" = "$KEY" ]; then
  echo "$(id -un)@$(hostname): authorized key unchanged"
  exit 0
fi
printf '%s\n' "$KEY" >"$file.hakube-new"
mv -f "$file.hakube-new" "$file"
echo "$(id -un)@$(hostname): authorized key is now ${KEY%% *} ...${KEY: -12}"
