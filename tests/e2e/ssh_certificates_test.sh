#!/usr/bin/env bash
# Host and user certificates against a real sshd of its own (a private
# 1-worker testbed, so the shared one keeps its config): a host certificate
# signed by a CA that known_hosts trusts (@cert-authority) is accepted with no
# per-host key pinned; each broken rule is refused, named, with nothing
# transferred: expired, not yet valid, wrong principal, a user certificate
# presented as a host certificate, another CA, a @revoked host key, a
# @revoked CA. Then user certificates: an sshd that trusts only the user CA
# (TrustedUserCAKeys, no authorized_keys) lets rch in with certificate_file,
# the ssh config's CertificateFile, or <key>-cert.pub beside the identity.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

PTB=$(mktemp -d /tmp/rch-certs.XXXXXX)
chmod 755 "$PTB"
cert_cleanup() {
  "${TESTBED[@]}" down "$PTB" >/dev/null 2>&1 || true
  rm -rf "$PTB"
  deploy_cleanup
}
trap cert_cleanup EXIT
"${TESTBED[@]}" up 1 "$PTB" >/dev/null
W=$PTB/w1
port=$(<"$W/port")
cp "$PTB/workers.toml" "$CFG/workers.toml"
stage "$NEXT" "$RCH_WKR_NEXT"
hostkey=$(cut -d' ' -f1,2 <"$W/ssh_host_ed25519_key.pub")

ssh-keygen -q -t ed25519 -N '' -C host-ca -f "$TMP/ca"
ssh-keygen -q -t ecdsa -N '' -C other-ca -f "$TMP/other_ca"
ca=$(cut -d' ' -f1,2 <"$TMP/ca.pub")
echo "HostCertificate $W/ssh_host_ed25519_key-cert.pub" >>"$W/sshd_config"

# host_cert SSH-KEYGEN-ARGS…: signs w1's host key, restarts its sshd to present it.
host_cert() {
  ssh-keygen -q -s "$@" -I "w1-host" "$W/ssh_host_ed25519_key.pub"
  "${TESTBED[@]}" stop 1 "$PTB" >/dev/null
  "${TESTBED[@]}" start 1 "$PTB" >/dev/null
}
# refused RULE: a deploy to w1 fails naming RULE, and nothing reached the worker.
refused() {
  deploy 1 --version "$NEXT"
  json "w = st['w1']; assert w['status'] == 'Failed', w
assert '''$1''' in w['error'], w['error']"
  [[ -z $(ls -A "$W/root") ]] || fail "something was written on the worker after '$1': $(ls -A "$W/root")"
}

echo "--- a host certificate from the trusted CA: accepted, no per-host key in known_hosts"
printf '@cert-authority [127.0.0.1]:%s %s\n' "$port" "$ca" >"$CFG/known_hosts"
host_cert "$TMP/ca" -h -n 127.0.0.1 -V -5m:+1h
cp "$CFG/known_hosts" "$TMP/kh.before"
deploy 0 --version "$NEXT" -v
TB=$PTB installed 1 "$NEXT" "$NEXT_SHA"
contains "$ERR" 'host key: host certificate "w1-host" signed by CA SHA256:'
cmp -s "$CFG/known_hosts" "$TMP/kh.before" || fail "known_hosts was changed: $(cat "$CFG/known_hosts")"
find "$W/root" -mindepth 1 -delete

echo "--- accept-new does not turn a broken certificate into trust-on-first-use"
write_config 'host_key_policy = "accept-new"'
host_cert "$TMP/ca" -h -n 127.0.0.1 -V 20200101:20200201
refused 'host certificate of 127.0.0.1:'"$port"' refused: certificate "w1-host" (serial 0) has expired: valid until 2020-02-01'
cmp -s "$CFG/known_hosts" "$TMP/kh.before" || fail "accept-new appended: $(cat "$CFG/known_hosts")"
write_config

echo "--- not yet valid, wrong principal, user certificate, other CA"
host_cert "$TMP/ca" -h -n 127.0.0.1 -V 20990101:21000101
refused 'is not yet valid: valid from 2099-01-01'
host_cert "$TMP/ca" -h -n w1.example.com -V -5m:+1h
refused 'does not name 127.0.0.1 among its principals (w1.example.com)'
host_cert "$TMP/ca" -n 127.0.0.1 -V -5m:+1h
refused 'is a user certificate, not a host certificate'
host_cert "$TMP/other_ca" -h -n 127.0.0.1 -V -5m:+1h
refused 'unknown CA: it is signed by SHA256:'

echo "--- a @revoked host key or CA is refused although the certificate is good"
host_cert "$TMP/ca" -h -n 127.0.0.1 -V -5m:+1h
printf '@revoked * %s\n' "$hostkey" >>"$CFG/known_hosts"
refused 'REVOKED host key of 127.0.0.1:'"$port"
printf '@cert-authority [127.0.0.1]:%s %s\n@revoked * %s\n' "$port" "$ca" "$ca" >"$CFG/known_hosts"
refused 'its CA SHA256:'
contains "$(json 'print(st["w1"]["error"])')" "is marked @revoked"

echo "--- user certificates: the worker trusts only the user CA"
ssh-keygen -q -t ed25519 -N '' -C user-ca -f "$TMP/user_ca"
printf '[127.0.0.1]:%s %s\n' "$port" "$hostkey" >"$CFG/known_hosts"
sed -i "s|^AuthorizedKeysFile .*|AuthorizedKeysFile none\nTrustedUserCAKeys $TMP/user_ca.pub|" "$W/sshd_config"
chmod 755 "$TMP"
"${TESTBED[@]}" stop 1 "$PTB" >/dev/null
"${TESTBED[@]}" start 1 "$PTB" >/dev/null
cp "$PTB/client/id_ed25519" "$TMP/id_user"
ssh-keygen -q -s "$TMP/user_ca" -I rch-user -n rchtest -V -5m:+1h "$PTB/client/id_ed25519.pub"
mv "$PTB/client/id_ed25519-cert.pub" "$TMP/user-cert.pub"
# Without a certificate: denied (sshd has no authorized_keys).
deploy 1 --version "$NEXT"
json 'assert "authentication" in st["w1"]["error"], st["w1"]'
# certificate_file in workers.toml
sed "s|^identity_file = .*|&\ncertificate_file = \"$TMP/user-cert.pub\"|" "$PTB/workers.toml" >"$CFG/workers.toml"
deploy 0 --version "$NEXT" -v
contains "$ERR" "login: certificate $TMP/user-cert.pub"
# CertificateFile of the ssh config
cp "$PTB/workers.toml" "$CFG/workers.toml"
printf 'Host 127.0.0.1\n  CertificateFile %s\n' "$TMP/user-cert.pub" >"$CFG/ssh_config"
deploy 0 --version "$NEXT" --force -v
contains "$ERR" "login: certificate $TMP/user-cert.pub"
# <identity>-cert.pub beside the key
: >"$CFG/ssh_config"
cp "$TMP/user-cert.pub" "$PTB/client/id_ed25519-cert.pub"
deploy 0 --version "$NEXT" --force -v
contains "$ERR" "login: certificate $PTB/client/id_ed25519-cert.pub"
# No identity_file: the ssh config's IdentityFile, with the certificate beside it
sed '/^identity_file = /d' "$PTB/workers.toml" >"$CFG/workers.toml"
printf 'Host 127.0.0.1\n  IdentityFile %s\n' "$PTB/client/id_ed25519" >"$CFG/ssh_config"
env -u SSH_AUTH_SOCK "$RCH" fleet deploy --no-toolchain --json --version "$NEXT" --force -v >"$TMP/out" 2>"$TMP/err" ||
  fail "deploy with the ssh config's IdentityFile and its certificate: $(cat "$TMP/out" "$TMP/err")"
contains "$(cat "$TMP/err")" "login: certificate $PTB/client/id_ed25519-cert.pub"
# A certificate_file made for another key is an error naming both
: >"$CFG/ssh_config"
ssh-keygen -q -t ed25519 -N '' -f "$TMP/other_key"
ssh-keygen -q -s "$TMP/user_ca" -I other -n rchtest -V -5m:+1h "$TMP/other_key.pub"
sed "s|^identity_file = .*|&\ncertificate_file = \"$TMP/other_key-cert.pub\"|" "$PTB/workers.toml" >"$CFG/workers.toml"
deploy 1 --version "$NEXT" --force
json 'e = st["w1"]["error"]; assert "certificate '"$TMP"'/other_key-cert.pub is not for identity file '"$PTB"'/client/id_ed25519" in e, e'
echo "PASS"
