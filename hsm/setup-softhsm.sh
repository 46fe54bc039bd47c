#!/usr/bin/env bash
# Creates a SoftHSM2 token for development and tests, in a directory of its own (never the
# system-wide token store, which needs the softhsm group):
#
#   hsm/setup-softhsm.sh DIR [LABEL]
#
# writes DIR/softhsm2.conf and DIR/tokens/, initialises a token LABEL (default "custos") with
# random SO and user PINs written to DIR/so-pin and DIR/user-pin (0600), and prints the
# environment to use it: SOFTHSM2_CONF and the module path. Installs softhsm2 with apt-get if it
# is missing. Idempotent for an existing DIR with the same label.
set -euo pipefail

dir="${1:?usage: hsm/setup-softhsm.sh DIR [LABEL]}"
label="${2:-custos}"
module=/usr/lib/softhsm/libsofthsm2.so

if ! command -v softhsm2-util >/dev/null 2>&1; then
  echo "installing softhsm2 (apt-get)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq </dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq softhsm2 </dev/null
fi

mkdir -p "$dir/tokens"
chmod 700 "$dir" "$dir/tokens"
dir="$(cd "$dir" && pwd)"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$dir/softhsm2.conf"

if softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*\b$label\b"; then
  echo "token '$label' already initialised in $dir" >&2
else
  umask 077
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/so-pin"
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/user-pin"
  softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(cat "$dir/so-pin")" --pin "$(cat "$dir/user-pin")" >/dev/null
  echo "token '$label' initialised in $dir" >&2
fi

# After initialisation the token moves to a new slot id and an empty slot stays listed: find the
# token by its label, never by slot number.
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
echo "# PKCS#11 module: $module; token label: $label; user PIN file: $dir/user-pin"
