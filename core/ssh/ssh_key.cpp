// SSH public keys, OpenSSH certificates and SSH signatures over OpenSSL 3.
#include "core/ssh/ssh_key.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>

#include <ctime>
#include <memory>

#include "core/util/text.hpp"

namespace rch {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct BldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;

constexpr std::string_view kCertSuffix = "-cert-v01@openssh.com";

// Reads the SSH wire types (RFC 4251 5) from a blob; any read past the end
// sets failed and returns empty values.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  std::uint32_t u32() {
    if (!need(4)) return 0;
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(data_[pos_++]);
    return v;
  }
  std::uint64_t u64() {
    const std::uint64_t hi = u32();
    return (hi << 32) | u32();
  }
  std::string_view string() {
    const std::uint32_t n = u32();
    if (!need(n)) return {};
    const auto s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::size_t pos() const { return pos_; }
  bool failed() const { return failed_; }
  bool at_end() const { return pos_ == data_.size(); }

 private:
  bool need(std::size_t n) {
    if (failed_ || data_.size() - pos_ < n) {
      failed_ = true;
      return false;
    }
    return true;
  }
  std::string_view data_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

void put_string(std::string& out, std::string_view s) {
  const auto n = static_cast<std::uint32_t>(s.size());
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  out += s;
}

// An mpint's magnitude (a positive one may carry a leading 0x00).
BnPtr bignum(std::string_view mpint) {
  return BnPtr(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(mpint.data()), static_cast<int>(mpint.size()), nullptr));
}

PkeyPtr from_params(const char* algorithm, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    return nullptr;
  }
  return PkeyPtr(key);
}

bool digest_verify(EVP_PKEY* key, const EVP_MD* md, std::string_view sig, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

const EVP_MD* ecdsa_digest(std::string_view curve) {
  if (curve == "nistp256") return EVP_sha256();
  if (curve == "nistp384") return EVP_sha384();
  if (curve == "nistp521") return EVP_sha512();
  return nullptr;
}

const char* ecdsa_group(std::string_view curve) {
  if (curve == "nistp256") return "P-256";
  if (curve == "nistp384") return "P-384";
  if (curve == "nistp521") return "P-521";
  return nullptr;
}

std::string utc(std::uint64_t t) {
  if (t == ~std::uint64_t{0}) return "forever";
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::optional<SshPublicKey> parse_public_key(std::string_view type, std::string_view base64) {
  auto blob = base64_decode(base64);
  if (!blob) return std::nullopt;
  Reader r(*blob);
  if (r.string() != type || r.failed()) return std::nullopt;
  return SshPublicKey{std::string(type), std::move(*blob)};
}

std::string ssh_key_type_of(std::string_view blob) {
  Reader r(blob);
  const std::string_view type = r.string();
  return r.failed() ? std::string() : std::string(type);
}

std::string ssh_fingerprint(std::string_view blob) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(blob.data()), blob.size(), digest);
  std::string b64 = base64_encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return "SHA256:" + b64;
}

Result<SshCertificate> parse_certificate(std::string_view blob) {
  Reader r(blob);
  SshCertificate c;
  c.type = r.string();
  if (r.failed() || !c.type.ends_with(kCertSuffix)) return make_error("not an OpenSSH certificate");
  const std::string plain_type = c.type.substr(0, c.type.size() - kCertSuffix.size());
  r.string();  // nonce
  const std::size_t key_start = r.pos();
  if (plain_type == "ssh-ed25519") {
    r.string();
  } else if (plain_type.starts_with("ecdsa-sha2-")) {
    r.string();  // curve
    r.string();  // Q
  } else if (plain_type == "ssh-rsa") {
    r.string();  // e
    r.string();  // n
  } else {
    return make_error("unsupported certificate type " + c.type);
  }
  c.key_blob.clear();
  put_string(c.key_blob, plain_type);
  c.key_blob += blob.substr(key_start, r.pos() - key_start);
  c.serial = r.u64();
  c.cert_type = r.u32();
  c.key_id = r.string();
  Reader principals(r.string());
  c.valid_after = r.u64();
  c.valid_before = r.u64();
  Reader critical(r.string());
  r.string();  // extensions: none concerns a host
  r.string();  // reserved
  c.ca_blob = r.string();
  c.signed_data = blob.substr(0, r.pos());
  c.signature = r.string();
  if (r.failed() || !r.at_end()) return make_error("malformed " + c.type + " certificate");
  while (!principals.at_end() && !principals.failed()) c.principals.emplace_back(principals.string());
  while (!critical.at_end() && !critical.failed()) {
    c.critical_options.emplace_back(critical.string());
    critical.string();  // its data
  }
  if (principals.failed() || critical.failed()) return make_error("malformed " + c.type + " certificate");
  return c;
}

Result<void> verify_ssh_signature(std::string_view key_blob, std::string_view signature, std::string_view data) {
  Reader key(key_blob);
  const std::string_view key_type = key.string();
  Reader sig(signature);
  const std::string_view sig_type = sig.string();
  const std::string_view sig_bytes = sig.string();
  if (key.failed() || sig.failed()) return make_error("malformed key or signature");
  const auto bad = [&] { return make_error(std::string(key_type) + " signature does not verify"); };

  if (key_type == "ssh-ed25519") {
    const std::string_view pk = key.string();
    if (sig_type != key_type || key.failed()) return bad();
    PkeyPtr pkey(EVP_PKEY_new_raw_public_key_ex(nullptr, "ED25519", nullptr,
                                                reinterpret_cast<const unsigned char*>(pk.data()), pk.size()));
    if (!pkey || !digest_verify(pkey.get(), nullptr, sig_bytes, data)) return bad();
    return {};
  }
  if (key_type.starts_with("ecdsa-sha2-")) {
    const std::string_view curve = key.string();
    const std::string_view q = key.string();
    const EVP_MD* md = ecdsa_digest(curve);
    if (sig_type != key_type || key.failed() || md == nullptr) return bad();
    std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, ecdsa_group(curve), 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, q.data(), q.size())) {
      return bad();
    }
    PkeyPtr pkey = from_params("EC", bld.get());
    // The SSH form is (mpint r, mpint s); OpenSSL wants DER.
    Reader rs(sig_bytes);
    BnPtr r = bignum(rs.string()), s = bignum(rs.string());
    if (!pkey || rs.failed() || !r || !s) return bad();
    std::unique_ptr<ECDSA_SIG, EcdsaSigFree> ecdsa(ECDSA_SIG_new());
    if (!ecdsa || ECDSA_SIG_set0(ecdsa.get(), r.get(), s.get()) != 1) return bad();
    r.release();
    s.release();
    unsigned char* der = nullptr;
    const int der_len = i2d_ECDSA_SIG(ecdsa.get(), &der);
    if (der_len <= 0) return bad();
    const std::string der_sig(reinterpret_cast<const char*>(der), static_cast<std::size_t>(der_len));
    OPENSSL_free(der);
    if (!digest_verify(pkey.get(), md, der_sig, data)) return bad();
    return {};
  }
  if (key_type == "ssh-rsa") {
    const EVP_MD* md = sig_type == "rsa-sha2-256" ? EVP_sha256() : sig_type == "rsa-sha2-512" ? EVP_sha512() : nullptr;
    if (md == nullptr) return make_error("RSA signature algorithm " + std::string(sig_type) + " is not accepted");
    BnPtr e = bignum(key.string()), n = bignum(key.string());
    std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
    if (key.failed() || !e || !n || !bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get())) {
      return bad();
    }
    PkeyPtr pkey = from_params("RSA", bld.get());
    if (!pkey) return bad();
    // OpenSSH may send a signature shorter than the modulus; OpenSSL wants it padded.
    const auto modulus = static_cast<std::size_t>(EVP_PKEY_get_size(pkey.get()));
    if (sig_bytes.size() > modulus) return bad();
    const std::string padded = std::string(modulus - sig_bytes.size(), '\0') + std::string(sig_bytes);
    if (!digest_verify(pkey.get(), md, padded, data)) return bad();
    return {};
  }
  return make_error("unsupported signature key type " + std::string(key_type));
}

Result<void> check_host_certificate(const SshCertificate& cert, std::string_view host, std::uint64_t now) {
  const std::string id = "certificate \"" + cert.key_id + "\" (serial " + std::to_string(cert.serial) + ")";
  if (cert.cert_type != SshCertificate::kHost) {
    return make_error(id + " is a " + (cert.cert_type == SshCertificate::kUser ? "user" : "unknown-type") +
                      " certificate, not a host certificate");
  }
  if (now < cert.valid_after) return make_error(id + " is not yet valid: valid from " + utc(cert.valid_after));
  if (now >= cert.valid_before) return make_error(id + " has expired: valid until " + utc(cert.valid_before));
  // OpenSSH 9.2 takes an empty list as "any host"; rch wants the host named.
  bool named = false;
  for (const auto& p : cert.principals) named = named || p == host;
  if (!named) {
    std::string list;
    for (const auto& p : cert.principals) list += (list.empty() ? "" : ", ") + p;
    return make_error(id + " does not name " + std::string(host) + " among its principals (" +
                      (list.empty() ? std::string("none") : list) + ")");
  }
  if (!cert.critical_options.empty()) {
    return make_error(id + " has an unknown critical option " + cert.critical_options.front());
  }
  if (auto r = verify_ssh_signature(cert.ca_blob, cert.signature, cert.signed_data); !r) {
    return make_error(id + ": the CA's signature does not verify (" + r.error() + ")");
  }
  return {};
}

}  // namespace rch
