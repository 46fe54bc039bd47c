#!/usr/bin/env bash
# A SoftHSM2 token for development and tests, in a directory of its own (never the system-wide
# token store, which needs the softhsm group):
#
#   hsm/setup-softhsm.sh DIR [LABEL]
#
# - installs softhsm2 and opensc (pkcs11-tool) with apt-get if they are missing;
# - writes DIR/softhsm2.conf with its token directory DIR/tokens (0700);
# - initialises a token LABEL (default "custos") with random SO and user PINs written to
#   DIR/so-pin and DIR/user-pin (0600), unless a token with that label is already there
#   (idempotent: run it again and nothing changes);
# - checks the token with pkcs11-tool: it lists the slot by label, and secp256k1 key generation
#   and CKM_ECDSA are available (what Custos needs);
# - prints the environment to use it and a `[hsm]` section for custos.toml.
#
# After --init-token SoftHSM2 moves the token to a new slot id and leaves an empty slot listed:
# always find the token by label (`--token-label`, `token_label = ...`), never by slot number.
set -euo pipefail

dir="${1:?usage: hsm/setup-softhsm.sh DIR [LABEL]}"
label="${2:-custos}"
module=/usr/lib/softhsm/libsofthsm2.so

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
missing=()
command -v softhsm2-util >/dev/null 2>&1 && [ -f "$module" ] || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq </dev/null >&2
  as_root apt-get install -y -qq "${missing[@]}" </dev/null >&2
fi

if [ ${#label} -gt 32 ]; then
  echo "a PKCS#11 token label has at most 32 characters: '$label'" >&2
  exit 2
fi

umask 077
mkdir -p "$dir/tokens"
chmod 700 "$dir" "$dir/tokens"
dir="$(cd "$dir" && pwd)"
conf="$dir/softhsm2.conf"
cat > "$conf.new" <<CONF
# SoftHSM2 configuration written by hsm/setup-softhsm.sh
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
mv "$conf.new" "$conf"
export SOFTHSM2_CONF="$conf"

has_token() {
  softhsm2-util --show-slots 2>/dev/null | grep -E "^\s*Label:\s+$1\s*$" >/dev/null
}

if has_token "$label"; then
  echo "token '$label' already initialised in $dir" >&2
  if [ ! -s "$dir/user-pin" ]; then
    echo "but $dir/user-pin is missing: the token cannot be used; remove $dir and run again" >&2
    exit 1
  fi
else
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/so-pin.new"
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/user-pin.new"
  softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(cat "$dir/so-pin.new")" --pin "$(cat "$dir/user-pin.new")" >/dev/null
  mv "$dir/so-pin.new" "$dir/so-pin"
  mv "$dir/user-pin.new" "$dir/user-pin"
  echo "token '$label' initialised in $dir" >&2
fi
chmod 600 "$dir/so-pin" "$dir/user-pin"

# What Custos needs from the token: CKM_ECDSA and EC key generation (secp256k1 is tried for real
# by `custos hsm status`), AES-GCM for the unseal slot.
mechanisms="$(pkcs11-tool --module "$module" --token-label "$label" --list-mechanisms 2>/dev/null)"
for needed in "ECDSA" "ECDSA-KEY-PAIR-GEN" "AES-GCM" "AES-KEY-GEN"; do
  if ! grep -qE "^\s*$needed[ ,]" <<<"$mechanisms"; then
    echo "the token does not list $needed" >&2
    exit 1
  fi
done

echo "export SOFTHSM2_CONF=$conf"
cat <<EOF
# PKCS#11 module: $module; token label: $label; user PIN file: $dir/user-pin
# custos.toml:
#   [hsm]
#   module = "$module"
#   token_label = "$label"
#   pin_file = "$dir/user-pin"
#   wallets = ["*"]
#   [hsm.module_env]
#   SOFTHSM2_CONF = "$conf"
EOF
