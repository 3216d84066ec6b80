// known_hosts parsing, matching, appending, and the host key decision.
#include "core/ssh/known_hosts.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/log/log.hpp"
#include "core/util/text.hpp"
#include "core/util/unique_fd.hpp"

namespace rch {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// OpenSSH's match_pattern: * any run, ? any one character, nothing else special.
bool wildcard(std::string_view s, std::string_view p) {
  while (!p.empty()) {
    if (p[0] == '*') {
      p.remove_prefix(1);
      if (p.empty()) return true;
      for (std::size_t i = 0; i <= s.size(); ++i) {
        if (wildcard(s.substr(i), p)) return true;
      }
      return false;
    }
    if (s.empty() || (p[0] != '?' && p[0] != s[0])) return false;
    s.remove_prefix(1);
    p.remove_prefix(1);
  }
  return s.empty();
}

std::string hmac_sha1(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::string describe(const SshPublicKey& key) { return key.type + " " + ssh_fingerprint(key.blob); }

}  // namespace

Result<std::vector<KnownHostEntry>> load_known_hosts(const std::filesystem::path& path) {
  std::vector<KnownHostEntry> entries;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return entries;
    return make_error("cannot read " + path.string() + ": " + std::strerror(errno));
  }
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    auto f = fields(line);
    if (f.empty() || f[0].starts_with("#")) continue;
    KnownHostEntry e;
    if (f[0] == "@cert-authority") {
      e.marker = KnownHostEntry::Marker::cert_authority;
    } else if (f[0] == "@revoked") {
      e.marker = KnownHostEntry::Marker::revoked;
    } else if (f[0].starts_with("@")) {
      continue;  // an unknown marker: OpenSSH skips the line
    }
    if (e.marker != KnownHostEntry::Marker::none) f.erase(f.begin());
    if (f.size() < 3) continue;
    auto key = parse_public_key(f[1], f[2]);
    if (!key) continue;
    e.hosts = f[0];
    e.key = std::move(*key);
    e.where = path.string() + ":" + std::to_string(number);
    entries.push_back(std::move(e));
  }
  return entries;
}

std::string known_hosts_name(std::string_view host, unsigned port) {
  if (port == 22) return std::string(host);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

std::string hash_known_host(std::string_view name, std::string_view salt) {
  return "|1|" + base64_encode(salt) + "|" + base64_encode(hmac_sha1(salt, name));
}

bool known_host_matches(std::string_view hosts, std::string_view name) {
  if (hosts.starts_with("|1|")) {
    const auto bar = hosts.find('|', 3);
    if (bar == std::string_view::npos) return false;
    const auto salt = base64_decode(hosts.substr(3, bar - 3));
    return salt && hash_known_host(name, *salt) == hosts;
  }
  const std::string host = lower(name);
  bool matched = false;
  std::size_t start = 0;
  while (start <= hosts.size()) {
    std::size_t comma = hosts.find(',', start);
    if (comma == std::string_view::npos) comma = hosts.size();
    std::string_view pattern = hosts.substr(start, comma - start);
    const bool negated = pattern.starts_with("!");
    if (negated) pattern.remove_prefix(1);
    if (!pattern.empty() && wildcard(host, lower(pattern))) {
      if (negated) return false;
      matched = true;
    }
    start = comma + 1;
  }
  return matched;
}

Result<void> append_known_host(const std::filesystem::path& path, std::string_view name, const SshPublicKey& key,
                               bool hashed) {
  std::string host(name);
  if (hashed) {
    unsigned char salt[20];
    if (RAND_bytes(salt, sizeof salt) != 1) return make_error("cannot make a salt for " + path.string());
    host = hash_known_host(name, std::string_view(reinterpret_cast<const char*>(salt), sizeof salt));
  }
  std::error_code ec;
  if (path.has_parent_path() && !std::filesystem::exists(path.parent_path(), ec)) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return make_error("cannot create " + path.parent_path().string() + ": " + ec.message());
    chmod(path.parent_path().c_str(), 0700);
  }
  UniqueFd fd(open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return make_error("cannot open " + path.string() + ": " + std::strerror(errno));
  if (flock(fd.get(), LOCK_EX) != 0) return make_error("cannot lock " + path.string() + ": " + std::strerror(errno));
  std::string line = host + " " + key.type + " " + base64_encode(key.blob) + "\n";
  // A last line without its newline would swallow ours.
  struct stat st {};
  if (fstat(fd.get(), &st) == 0 && st.st_size > 0) {
    char last = '\n';
    if (pread(fd.get(), &last, 1, st.st_size - 1) == 1 && last != '\n') line.insert(0, "\n");
  }
  const ssize_t n = write(fd.get(), line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    return make_error("cannot append to " + path.string() + ": " + (n < 0 ? std::strerror(errno) : "short write"));
  }
  if (fsync(fd.get()) != 0) return make_error("cannot sync " + path.string() + ": " + std::strerror(errno));
  return {};
}

Result<std::string> check_host_trust(const HostTrustRequest& req) {
  const std::string name = known_hosts_name(req.host, req.port);
  const std::string host_port = req.host + ":" + std::to_string(req.port);
  const std::string& file = req.known_hosts_label;
  std::vector<KnownHostEntry> matching;
  std::vector<std::filesystem::path> files{req.known_hosts};
  files.insert(files.end(), req.read_only.begin(), req.read_only.end());
  for (const auto& path : files) {
    auto loaded = load_known_hosts(path);
    if (!loaded) return make_error("cannot check the host key of " + host_port + ": " + loaded.error());
    for (auto& e : *loaded) {
      if (known_host_matches(e.hosts, name)) matching.push_back(std::move(e));
    }
  }
  const auto revoked = [&](const std::string& blob) -> const KnownHostEntry* {
    for (const auto& e : matching) {
      if (e.marker == KnownHostEntry::Marker::revoked && e.key.blob == blob) return &e;
    }
    return nullptr;
  };
  if (const auto* r = revoked(req.key.blob)) {
    return make_error("REVOKED host key of " + host_port + ": the server offers " + describe(req.key) +
                      ", which is marked @revoked (" + r->where + "); refusing to connect");
  }

  bool other_keys = false;
  std::vector<const KnownHostEntry*> cas;
  for (const auto& e : matching) {
    if (e.marker == KnownHostEntry::Marker::none) {
      if (e.key.blob == req.key.blob) return "known_hosts " + e.where;
      other_keys = true;
    } else if (e.marker == KnownHostEntry::Marker::cert_authority) {
      cas.push_back(&e);
    }
  }

  if (!cas.empty() && req.fetch_certificates) {
    auto certs = req.fetch_certificates();
    if (!certs) return make_error("cannot check the host certificate of " + host_port + ": " + certs.error());
    for (const auto& blob : *certs) {
      auto cert = parse_certificate(blob);
      if (!cert || cert->key_blob != req.key.blob) continue;  // a certificate of another of its keys
      const std::string refused = "host certificate of " + host_port + " refused: ";
      const std::string ca_desc = ssh_fingerprint(cert->ca_blob);
      if (const auto* r = revoked(cert->ca_blob)) {
        return make_error(refused + "its CA " + ca_desc + " is marked @revoked (" + r->where +
                          "); refusing to connect");
      }
      const auto trusted = std::find_if(cas.begin(), cas.end(), [&](auto* e) { return e->key.blob == cert->ca_blob; });
      if (trusted == cas.end()) {
        return make_error(refused + "unknown CA: it is signed by " + ca_desc + ", which no @cert-authority line for " +
                          name + " in " + file + " trusts; refusing to connect");
      }
      if (auto ok = check_host_certificate(*cert, req.host, req.now); !ok) {
        return make_error(refused + ok.error() + "; refusing to connect");
      }
      return "host certificate \"" + cert->key_id + "\" signed by CA " + ca_desc + " (" + (*trusted)->where + ")";
    }
  }

  if (other_keys) {
    return make_error("host key of " + host_port + " has CHANGED: the server now offers " + describe(req.key) +
                      ", which does not match " + file +
                      ". This may be a man-in-the-middle attack; refusing to connect. If the worker was really "
                      "reinstalled, remove the old key (ssh-keygen -R '" +
                      name + "' -f " + file + ") and add the new one after checking its fingerprint");
  }
  if (!cas.empty()) {
    return make_error("host key of " + host_port + " (" + describe(req.key) +
                      ") comes with no certificate from a CA that " + file + " trusts for " + name +
                      "; refusing to connect (give the host a certificate: ssh-keygen -s CA -h -n " + req.host + ")");
  }
  if (req.policy == HostKeyPolicy::strict) {
    return make_error("host key of " + host_port + " is not in " + file + " (server offers " + describe(req.key) +
                      "); check the fingerprint, then add it: ssh-keyscan -p " + std::to_string(req.port) + " " +
                      req.host + " >> " + file);
  }
  if (auto r = append_known_host(req.known_hosts, name, req.key, req.hash_new_entries); !r) {
    return make_error("cannot add the host key of " + host_port + " to " + file + ": " + r.error());
  }
  log::warn("added new host key of " + host_port + " (" + describe(req.key) + ") to " + file +
            (req.hash_new_entries ? " (hashed: HashKnownHosts yes)" : ""));
  return std::string("added to ") + file + (req.hash_new_entries ? " (hashed)" : "");
}

}  // namespace rch
