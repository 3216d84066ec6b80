// SshSession over libssh 0.10: connect (ssh config, host key, auth) and exec
// with a deadline.
//
// Measured over loopback against the testbed sshd (OpenSSH 9.2, libssh
// 0.10.6, 2 vCPUs shared with other builds, so spread is wide), random data
// through exec_with_input_file on one session, median (best) of 9:
//   15 MB into `cat > /dev/null`   aes128-gcm 240 (380) MB/s, chacha20 160 (190)
//   15 MB into `sha256sum`         aes128-gcm  85  (94) MB/s; sha256sum alone
//                                  hashes ~135 MB/s here, so it is the limit
//   150 MB into `cat > /dev/null`  aes128-gcm 680 (720) MB/s, chacha20 200 (220)
// The sender waits on the server's 2 MB window (sshd + cat), not on its own
// CPU: 0.5 s of client CPU for 450 MB. Hence aes128-gcm first below.
// connect + auth ~25 ms (curve25519-sha256, libssh's default; forcing
// ecdh-sha2-nistp256 saves ~4 ms, not worth leaving X25519), first exec on a
// session ~4 ms, later ones ~2-3 ms.
#include "core/ssh/session.hpp"

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/exec/process.hpp"
#include "core/log/log.hpp"
#include "core/ssh/known_hosts.hpp"
#include "core/ssh/quote.hpp"
#include "core/ssh/resolve.hpp"
#include "core/util/text.hpp"
#include "core/util/user.hpp"

namespace rch {
namespace {

using Clock = std::chrono::steady_clock;

struct SessionFree {
  void operator()(ssh_session s) const {
    ssh_disconnect(s);
    ssh_free(s);
  }
};
struct KeyFree {
  void operator()(ssh_key k) const { ssh_key_free(k); }
};
struct CharFree {
  void operator()(char* p) const { ssh_string_free_char(p); }
};
struct FileClose {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

using SessionPtr = std::unique_ptr<ssh_session_struct, SessionFree>;
using KeyPtr = std::unique_ptr<ssh_key_struct, KeyFree>;
using CharPtr = std::unique_ptr<char, CharFree>;
using FilePtr = std::unique_ptr<std::FILE, FileClose>;

// Writes go to libssh in pieces of this size (it splits them into 32 KiB
// packets); uploads read the local file in the same chunks.
constexpr std::size_t kChunk = 256 * 1024;
constexpr const char* kCiphers =
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr";
// Idle waits wake at least this often, as a guard against a wakeup libssh
// consumed internally.
constexpr int kMaxIdleWaitMs = 200;
// The remote guard every command runs under (POSIX sh, $1 deadline in s (0:
// none), $2 1 when the command reads the channel's stdin, $3 the command).
// `timeout` gives the command its own process group and SIGKILLs it at the
// deadline (a backstop: rch closed the channel 5 s earlier). Closing our channel (a timeout here, or the connection
// dropping) gives the channel's stdin EOF: a command reading it sees that itself; for the others, which read /dev/null,
// a watcher reading it kills the group (SIGTERM, SIGKILL 2 s later; without a PTY sshd sends no SIGHUP). A command that
// ends by itself stops the watcher first: what it leaves running on purpose (nohup) stays. The watcher reads with the
// shell's own `read` (no process of its own: every command pays for the guard).
constexpr const char* kGuard = R"(t=$1 in=$2 c=$3
command -v timeout >/dev/null 2>&1 || timeout() { shift 3; "$@"; }
exec 3<&0 </dev/null
if [ "$in" = 1 ]; then
  timeout -s KILL "$t" "${SHELL:-/bin/sh}" -c "$c" <&3 3<&- &
else
  timeout -s KILL "$t" "${SHELL:-/bin/sh}" -c "$c" 3<&- &
fi
pid=$! w= gaveup=
if [ "$in" = 0 ]; then
  trap gaveup=1 USR1
  {
    trap '' HUP INT TERM
    while read -r _; do :; done
    kill -USR1 $$
    kill -TERM "-$pid" || kill -TERM "$pid" || exit 0
    for i in 1 2; do kill -0 "-$pid" || exit 0; sleep 1; done
    kill -KILL "-$pid"
  } <&3 >/dev/null 2>&1 &
  w=$!
fi
exec 3<&-
wait "$pid"
rc=$?
[ -n "$gaveup" ] || [ -z "$w" ] || kill -KILL "$w"
exit $rc)";

void init_libssh_once() {
  static std::once_flag once;
  std::call_once(once, [] { ssh_init(); });
}

std::string local_user_name() { return current_user_name(); }

std::string session_string_option(ssh_session s, ssh_options_e option) {
  char* raw = nullptr;
  if (ssh_options_get(s, option, &raw) != SSH_OK || raw == nullptr) return {};
  CharPtr owned(raw);
  return owned.get();
}

// Shell convention for a command killed by a signal (as $? shows it).
int signal_exit_code(const std::string& name) {
  static const std::pair<const char*, int> table[] = {
      {"HUP", 1},   {"INT", 2},   {"QUIT", 3},  {"ILL", 4},   {"TRAP", 5},  {"ABRT", 6},
      {"BUS", 7},   {"FPE", 8},   {"KILL", 9},  {"USR1", 10}, {"SEGV", 11}, {"USR2", 12},
      {"PIPE", 13}, {"ALRM", 14}, {"TERM", 15}, {"XCPU", 24}, {"XFSZ", 25},
  };
  for (const auto& [n, num] : table) {
    if (name == n) return 128 + num;
  }
  return -1;
}

// Turns on TCP keepalive: libssh 0.10 has no ServerAliveInterval, so a
// pooled, idle session to a host that vanished is noticed by the kernel
// (~60 s) instead of never.
void enable_tcp_keepalive(int fd) {
  int on = 1, idle = 30, interval = 10, count = 3;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

// Where a command's stdin comes from: a buffer, or a file read in chunks.
class StdinFeed {
 public:
  explicit StdinFeed(std::string_view data) : pending_(data) {}
  StdinFeed(FilePtr file, std::string name) : file_(std::move(file)), name_(std::move(name)), buf_(kChunk) {}

  // The next bytes to send; empty once the input is exhausted.
  Result<std::string_view> peek() {
    if (pending_.empty() && file_) {
      const std::size_t n = std::fread(buf_.data(), 1, buf_.size(), file_.get());
      if (n == 0) {
        if (std::ferror(file_.get())) return make_error("cannot read " + name_ + ": " + std::strerror(errno));
        file_.reset();
      }
      pending_ = std::string_view(buf_.data(), n);
    }
    return pending_;
  }
  void consume(std::size_t n) {
    pending_.remove_prefix(n);
    if (on_consume) on_consume(n);
  }
  // Told every consume(n) (upload progress).
  std::function<void(std::size_t)> on_consume;
  // The remote end stopped reading; nothing more will be sent.
  void abandon() {
    pending_ = {};
    file_.reset();
  }

 private:
  std::string_view pending_;
  FilePtr file_;
  std::string name_;
  std::vector<char> buf_;
};

// Waits for the server and processes what it sends, whatever the channel
// state: libssh's channel read/poll functions stop reading the socket once
// the server sent EOF, which would leave window adjusts (a command that
// closed its output but still reads stdin) and the close unprocessed. The
// session's socket is moved into this event for the pump's lifetime, the
// idiom libssh's own ssh_channel_select uses.
class Pump {
 public:
  explicit Pump(ssh_session s) : session_(s), event_(ssh_event_new()) {
    if (event_ != nullptr && ssh_event_add_session(event_, session_) != SSH_OK) {
      ssh_event_free(event_);
      event_ = nullptr;
    }
  }
  ~Pump() {
    if (event_ == nullptr) return;
    ssh_event_remove_session(event_, session_);
    ssh_event_free(event_);
  }
  Pump(const Pump&) = delete;
  Pump& operator=(const Pump&) = delete;

  bool ok() const { return event_ != nullptr; }

  // Waits up to `ms` (capped) for traffic, processes it and flushes queued
  // output. TCP_QUICKACK is re-armed first: sshd keeps Nagle on for exec
  // sessions, so its second small reply in a row (e.g. the channel
  // confirmation after the post-auth hostkeys/debug messages) waits for our
  // ACK, which Linux delays 40 ms while we have nothing to send. Measured:
  // first exec on a session 48 ms -> 3 ms.
  void wait(long ms) const {
    const int one = 1;
    setsockopt(ssh_get_fd(session_), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    ssh_event_dopoll(event_, static_cast<int>(std::clamp(ms, 0L, static_cast<long>(kMaxIdleWaitMs))));
  }

 private:
  ssh_session session_;
  ssh_event event_;
};

// An exec channel and the callbacks that watch it. The callbacks are
// unregistered before the channel is freed: libssh may keep a freed channel
// around until the server's close arrives and must not call into a dead frame.
class ExecChannel {
 public:
  explicit ExecChannel(ssh_session s) : channel_(ssh_channel_new(s)) {
    std::memset(&callbacks_, 0, sizeof callbacks_);
    callbacks_.userdata = this;
    callbacks_.channel_exit_signal_function = [](ssh_session, ssh_channel, const char* signal, int, const char*,
                                                 const char*, void* self) {
      static_cast<ExecChannel*>(self)->exit_signal = signal != nullptr ? signal : "?";
    };
    ssh_callbacks_init(&callbacks_);
    if (channel_ != nullptr) ssh_set_channel_callbacks(channel_, &callbacks_);
  }
  ~ExecChannel() {
    if (channel_ == nullptr) return;
    ssh_remove_channel_callbacks(channel_, &callbacks_);
    ssh_channel_free(channel_);  // closes it first if still open
  }
  ExecChannel(const ExecChannel&) = delete;
  ExecChannel& operator=(const ExecChannel&) = delete;

  ssh_channel get() const { return channel_; }
  // Before ssh_disconnect, which frees every channel of the session itself.
  void forget() {
    if (channel_ != nullptr) ssh_remove_channel_callbacks(channel_, &callbacks_);
    channel_ = nullptr;
  }
  std::optional<std::string> exit_signal;

 private:
  ssh_channel channel_;
  ssh_channel_callbacks_struct callbacks_;
};

}  // namespace

struct SshSession::Impl {
  SessionPtr session;
  std::string where;  // user@host:port
  std::string details;
  std::string home;
  int connect_timeout_s = 10;
  std::size_t max_output_bytes = 0;
  int stall_timeout_s = 0;
  ssh_counter_struct received{};  // what the server sent: any byte is a sign of life
  // Channels of commands that run on after hold() returned, by id; declared
  // after `session`, so they are freed before it.
  std::map<int, std::unique_ptr<ExecChannel>> held;
  int last_hold_id = 0;

  Error fail(const std::string& what) const {
    return make_error(what + " (" + where + "): " + ssh_get_error(session.get()));
  }

  // libssh's timeout for its own internal waits, in milliseconds.
  void set_libssh_timeout_ms(long ms) {
    ms = std::max(1L, ms);
    long sec = ms / 1000, usec = (ms % 1000) * 1000;
    ssh_options_set(session.get(), SSH_OPTIONS_TIMEOUT, &sec);
    ssh_options_set(session.get(), SSH_OPTIONS_TIMEOUT_USEC, &usec);
  }

  // During an exec, libssh's internal waits are cut to 1 ms and run() does
  // the waiting itself (Pump::wait), keeping the deadline and the
  // TCP_QUICKACK trick; the connect timeout is restored afterwards.
  class ShortLibsshWaits {
   public:
    explicit ShortLibsshWaits(Impl& impl) : impl_(impl) { impl_.set_libssh_timeout_ms(1); }
    ~ShortLibsshWaits() { impl_.set_libssh_timeout_ms(impl_.connect_timeout_s * 1000L); }
    ShortLibsshWaits(const ShortLibsshWaits&) = delete;
    ShortLibsshWaits& operator=(const ShortLibsshWaits&) = delete;

   private:
    Impl& impl_;
  };

  // `stdin_used`: the command reads the feed; otherwise the channel's stdin
  // stays open for the guard's watcher until the command exits. `stall_s`
  // > 0: no progress for that long ends the command as stalled. `sink`:
  // where the output within the cap goes (null: into the result's out/err).
  // With `keep`, a command that prints a whole first line is left running:
  // its channel moves into *keep and the result holds what it printed so far.
  Result<ExecResult> run(const std::string& command, int timeout_s, StdinFeed& feed, bool stdin_used, int stall_s,
                         const OutputSink* sink = nullptr, std::unique_ptr<ExecChannel>* keep = nullptr);
};

namespace {

Result<void> apply_options(ssh_session s, const SshTarget& target, const std::string& where) {
  auto set = [&](ssh_options_e option, const void* value, const char* name) -> Result<void> {
    if (ssh_options_set(s, option, value) == SSH_OK) return {};
    return make_error(std::string("ssh: cannot set ") + name + " for " + where + ": " + ssh_get_error(s));
  };
  // The alias first: the ssh config's Host blocks match against it.
  if (auto r = set(SSH_OPTIONS_HOST, target.host.c_str(), "host"); !r) return r;
  if (target.ssh_config_file == "none") {
    const int no = 0;
    if (auto r = set(SSH_OPTIONS_PROCESS_CONFIG, &no, "ProcessConfig"); !r) return r;
  } else {
    const char* file = target.ssh_config_file.empty() ? nullptr : target.ssh_config_file.c_str();
    // libssh skips a missing file silently; one named explicitly must exist.
    if (file != nullptr && access(file, R_OK) != 0) {
      return make_error("ssh: cannot read ssh config " + target.ssh_config_file + " for " + where + ": " +
                        std::strerror(errno));
    }
    if (ssh_options_parse_config(s, file) != SSH_OK) {
      return make_error("ssh: cannot read ssh config " + (file != nullptr ? target.ssh_config_file : "~/.ssh/config") +
                        " for " + where + ": " + ssh_get_error(s));
    }
  }
  // Explicit fields win over the ssh config.
  if (!target.user.empty()) {
    if (auto r = set(SSH_OPTIONS_USER, target.user.c_str(), "user"); !r) return r;
  }
  if (target.port != 22) {
    const unsigned int port = static_cast<unsigned int>(target.port);
    if (auto r = set(SSH_OPTIONS_PORT, &port, "port"); !r) return r;
  }
  if (!target.known_hosts_file.empty()) {
    if (auto r = set(SSH_OPTIONS_KNOWNHOSTS, target.known_hosts_file.c_str(), "known_hosts"); !r) return r;
  }
  const long timeout = std::max(1, target.connect_timeout_s);
  if (auto r = set(SSH_OPTIONS_TIMEOUT, &timeout, "timeout"); !r) return r;
  // Without TCP_NODELAY every small packet waits on Nagle + delayed ACK:
  // measured 47 ms instead of 6 ms for auth, 1 MB/s uploads.
  const int one = 1;
  if (auto r = set(SSH_OPTIONS_NODELAY, &one, "nodelay"); !r) return r;
  // AES-GCM runs on AES-NI: 3x the upload speed of libssh's default
  // chacha20-poly1305 (figures at the top). Key exchange stays libssh's
  // default, curve25519-sha256 first.
  if (auto r = set(SSH_OPTIONS_CIPHERS_C_S, kCiphers, "ciphers"); !r) return r;
  if (auto r = set(SSH_OPTIONS_CIPHERS_S_C, kCiphers, "ciphers"); !r) return r;
  return {};
}

// libssh reports socket errors as text only. What a host that is rebooting
// or restarting sshd gives: refused, reset, dropped before the banner, timed
// out, no route. Name resolution and key exchange failures are not transient.
bool is_transient_connect_error(const std::string& why) {
  static const char* const kTransient[] = {"refused",  "reset by peer", "Timeout",      "timed out",
                                           "No route", "unreachable",   "disconnected", "Connection closed"};
  return std::any_of(std::begin(kTransient), std::end(kTransient),
                     [&](const char* t) { return why.find(t) != std::string::npos; });
}

// ~/.ssh as libssh and OpenSSH find it: through the password database, not $HOME.
std::string ssh_home_dir() { return passwd_home_dir().string(); }

// The certificates `host` presents, fetched with OpenSSH's ssh-keyscan -c:
// libssh 0.10 cannot negotiate certificate host keys. Only direct
// connections: through ProxyJump ssh-keyscan could not reach the host.
Result<std::vector<std::string>> fetch_host_certificates(const std::string& host, unsigned port, bool jumped,
                                                         int timeout_s) {
  if (jumped) return make_error("host certificates are not checked through ProxyJump (ssh-keyscan connects directly)");
  auto run = run_process({"ssh-keyscan", "-c", "-T", std::to_string(timeout_s), "-p", std::to_string(port), host},
                         timeout_s + 5);
  if (!run) return make_error("cannot run ssh-keyscan: " + run.error());
  std::vector<std::string> certs;
  std::istringstream in(run->out);
  for (std::string line; std::getline(in, line);) {
    // OpenSSH 9.2 prints "TYPE BASE64" for a certificate (no host name first).
    std::istringstream fields(line);
    std::string type, base64;
    while (fields >> type && !type.ends_with("-cert-v01@openssh.com")) {
    }
    if (!(fields >> base64)) continue;
    if (auto key = parse_public_key(type, base64)) certs.push_back(std::move(key->blob));
  }
  return certs;
}

// Checks the handshake's host key against known_hosts (rch's own reading:
// markers, certificates); value: how the key was trusted.
Result<std::string> verify_host_key(ssh_session s, const SshTarget& target, const std::string& host, unsigned int port,
                                    const SshResolved& resolved) {
  const std::string host_port = host + ":" + std::to_string(port);
  ssh_key raw_key = nullptr;
  if (ssh_get_server_publickey(s, &raw_key) != SSH_OK) {
    return make_error("cannot get the host key of " + host_port + ": " + ssh_get_error(s));
  }
  KeyPtr key(raw_key);
  char* raw_base64 = nullptr;
  if (ssh_pki_export_pubkey_base64(key.get(), &raw_base64) != SSH_OK) {
    return make_error("cannot read the host key of " + host_port + ": " + ssh_get_error(s));
  }
  const CharPtr base64(raw_base64);
  const std::string blob = base64_decode(base64.get()).value_or("");
  HostTrustRequest req;
  req.host = host;
  req.port = port;
  req.key = SshPublicKey{ssh_key_type_of(blob), blob};
  // libssh applies UserKnownHostsFile of the ssh config; %d and ~ are the home directory.
  std::string file =
      target.known_hosts_file.empty() ? session_string_option(s, SSH_OPTIONS_KNOWNHOSTS) : target.known_hosts_file;
  if (file.empty()) file = "%d/.ssh/known_hosts";
  if (file.starts_with("%d/") || file.starts_with("~/")) file = ssh_home_dir() + file.substr(2);
  req.known_hosts = file;
  req.known_hosts_label = file == ssh_home_dir() + "/.ssh/known_hosts" ? "~/.ssh/known_hosts" : file;
  if (access("/etc/ssh/ssh_known_hosts", R_OK) == 0) req.read_only.emplace_back("/etc/ssh/ssh_known_hosts");
  req.policy = target.host_key_policy;
  req.hash_new_entries = resolved.hash_known_hosts;
  const bool jumped = !resolved.jump.empty();
  const int timeout = std::max(1, target.connect_timeout_s);
  req.fetch_certificates = [host, port, jumped, timeout] {
    return fetch_host_certificates(host, port, jumped, timeout);
  };
  req.now = static_cast<std::uint64_t>(std::time(nullptr));
  return check_host_trust(req);
}

// Whether a private key file is protected by a passphrase (OpenSSH's format
// names its cipher; PEM says ENCRYPTED).
bool key_needs_passphrase(const std::string& path) {
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("ENCRYPTED") != std::string::npos) return true;
  constexpr std::string_view kBegin = "-----BEGIN OPENSSH PRIVATE KEY-----";
  const auto begin = text.find(kBegin);
  const auto end = text.find("-----END", begin == std::string::npos ? 0 : begin);
  if (begin == std::string::npos || end == std::string::npos) return false;
  std::string body;
  for (auto i = begin + kBegin.size(); i < end; ++i) {
    if (text[i] != '\n' && text[i] != '\r') body += text[i];
  }
  // "openssh-key-v1\0", then the cipher's name as an SSH string.
  const auto raw = base64_decode(body);
  constexpr std::size_t kMagic = 15;
  if (!raw || raw->size() < kMagic + 4) return false;
  return ssh_key_type_of(raw->substr(kMagic)) != "none";
}

std::string passphrase_hint(const std::string& path) {
  return "identity file " + path +
         " is protected by a passphrase, which rch cannot ask for: load it into ssh-agent (ssh-add " + path +
         ") and make sure SSH_AUTH_SOCK is set for rch";
}

// The certificate to offer with `identity`: the target's certificate_file,
// else the ssh config's CertificateFile, else <identity>-cert.pub when present.
std::string certificate_for(const SshTarget& target, const SshResolved& resolved, const std::string& identity) {
  if (!target.certificate_file.empty()) return target.certificate_file;
  for (const auto& f : resolved.certificate_files) {
    if (access(f.c_str(), R_OK) == 0) return f;
  }
  const std::string beside = identity + "-cert.pub";
  return access(beside.c_str(), R_OK) == 0 ? beside : std::string();
}

// Offers the private key `id` with its certificate. Value:
// "certificate FILE" when it logged in, "" when the server refused it (or,
// unless `must_match`, when the certificate is for another key).
Result<std::string> offer_certificate(ssh_session s, const std::string& id, const std::string& cert_file,
                                      const std::string& where, bool must_match) {
  ssh_key raw_cert = nullptr;
  if (ssh_pki_import_cert_file(cert_file.c_str(), &raw_cert) != SSH_OK) {
    return make_error("cannot load certificate " + cert_file + " for " + where + ": not an OpenSSH certificate");
  }
  KeyPtr cert(raw_cert);
  ssh_key raw_copy = nullptr;
  if (ssh_pki_import_privkey_file(id.c_str(), nullptr, nullptr, nullptr, &raw_copy) != SSH_OK) {
    return make_error("cannot load identity file " + id + " for " + where);
  }
  KeyPtr with_cert(raw_copy);
  // libssh 0.10 copies a certificate onto any key: compare the certified key.
  char* cert_b64 = nullptr;
  char* key_b64 = nullptr;
  const bool exported = ssh_pki_export_pubkey_base64(cert.get(), &cert_b64) == SSH_OK &&
                        ssh_pki_export_pubkey_base64(with_cert.get(), &key_b64) == SSH_OK;
  const CharPtr cert_text(cert_b64), key_text(key_b64);
  const auto parsed = exported ? parse_certificate(base64_decode(cert_text.get()).value_or(""))
                               : Result<SshCertificate>(make_error("not exported"));
  const bool matches = parsed.ok() && parsed->key_blob == base64_decode(key_text.get()).value_or("");
  if (!matches || ssh_pki_copy_cert_to_privkey(cert.get(), with_cert.get()) != SSH_OK) {
    if (!must_match) return std::string();
    return make_error("certificate " + cert_file + " is not for identity file " + id + " (" + where + ")");
  }
  const int rc = ssh_userauth_publickey(s, nullptr, with_cert.get());
  if (rc == SSH_AUTH_SUCCESS) return "certificate " + cert_file;
  if (rc == SSH_AUTH_ERROR) return make_error("authentication of " + where + " failed: " + ssh_get_error(s));
  return std::string();
}

// Value: the credential that worked, for the debug log.
Result<std::string> authenticate(ssh_session s, const SshTarget& target, const std::string& where,
                                 const SshResolved& resolved) {
  std::vector<std::string> tried;
  const char* sock = std::getenv("SSH_AUTH_SOCK");
  const bool have_agent = sock != nullptr && *sock != '\0';
  if (!target.identity_file.empty()) {
    const std::string& id = target.identity_file;
    if (access(id.c_str(), R_OK) != 0) {
      return make_error("cannot read identity file " + id + " for " + where + ": " + std::strerror(errno));
    }
    ssh_key raw_key = nullptr;
    if (ssh_pki_import_privkey_file(id.c_str(), nullptr, nullptr, nullptr, &raw_key) != SSH_OK) {
      if (!key_needs_passphrase(id)) {
        return make_error("cannot load identity file " + id + " for " + where + ": not a private key");
      }
      if (!have_agent) return make_error("cannot log in to " + where + ": " + passphrase_hint(id));
      tried.push_back("identity file " + id + " (needs a passphrase)");
    } else {
      KeyPtr key(raw_key);
      if (const std::string cert_file = certificate_for(target, resolved, id); !cert_file.empty()) {
        auto offered = offer_certificate(s, id, cert_file, where, true);
        if (!offered || !offered->empty()) return offered;
        tried.push_back("certificate " + cert_file);
      }
      const int rc = ssh_userauth_publickey(s, nullptr, key.get());
      if (rc == SSH_AUTH_SUCCESS) return "identity file " + id;
      if (rc == SSH_AUTH_ERROR) return make_error("authentication of " + where + " failed: " + ssh_get_error(s));
      tried.push_back("identity file " + id);
    }
  }
  if (have_agent) {
    const int rc = ssh_userauth_agent(s, nullptr);
    if (rc == SSH_AUTH_SUCCESS) return std::string("ssh-agent");
    tried.push_back("ssh-agent");
  }
  // libssh offers the ssh config's IdentityFiles (and the default keys) as
  // plain keys only: offer the certificate of each that has one first.
  for (const auto& id : target.identity_file.empty() ? resolved.identity_files : std::vector<std::string>{}) {
    const std::string cert_file = certificate_for(target, resolved, id);
    // A missing key or one with a passphrase is libssh's to skip (or the agent's).
    if (cert_file.empty() || access(id.c_str(), R_OK) != 0 || key_needs_passphrase(id)) continue;
    auto offered = offer_certificate(s, id, cert_file, where, false);
    if (!offered || !offered->empty()) return offered;
    tried.push_back("certificate " + cert_file);
  }
  // The default keys (~/.ssh/id_*) and any IdentityFile of the ssh config.
  const int rc = ssh_userauth_publickey_auto(s, nullptr, nullptr);
  if (rc == SSH_AUTH_SUCCESS) return std::string("default keys");
  tried.push_back("default keys");

  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  std::string hint;
  if (!have_agent) {
    for (const auto& f : resolved.identity_files) {
      if (access(f.c_str(), R_OK) == 0 && key_needs_passphrase(f)) {
        hint = "; " + passphrase_hint(f);
        break;
      }
    }
  }
  return make_error("authentication of " + where + " failed (tried " + list + "): " + ssh_get_error(s) + hint);
}

// One ProxyJump hop ([user@]host[:port]) as a target of the same ssh config.
SshTarget hop_target(const SshTarget& target, std::string hop) {
  SshTarget t;
  t.ssh_config_file = target.ssh_config_file;
  if (const auto at = hop.rfind('@'); at != std::string::npos) {
    t.user = hop.substr(0, at);
    hop = hop.substr(at + 1);
  }
  if (const auto colon = hop.rfind(':'); colon != std::string::npos && hop.find(']') == std::string::npos) {
    t.port = std::atoi(hop.c_str() + colon + 1);
    hop = hop.substr(0, colon);
  }
  t.host = hop;
  return t;
}

// ProxyJump through OpenSSH's client, as libssh 0.10 does it itself, but with
// the ssh config rch was given (-F) and the client's stderr kept in a file, so
// a failure can say which hop failed and why.
class JumpCommand {
 public:
  JumpCommand() = default;
  JumpCommand(const JumpCommand&) = delete;
  JumpCommand& operator=(const JumpCommand&) = delete;
  ~JumpCommand() {
    if (!err_file_.empty()) unlink(err_file_.c_str());
  }

  Result<void> install(ssh_session s, const SshTarget& target, const SshResolved& resolved, const std::string& host,
                       unsigned port) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "rch-jump-XXXXXX").string();
    const int fd = mkstemp(tmpl.data());
    if (fd < 0) return make_error("cannot create a temp file for ProxyJump: " + std::string(std::strerror(errno)));
    close(fd);
    err_file_ = tmpl;
    std::vector<std::string> argv{"ssh"};
    if (!target.ssh_config_file.empty()) argv.insert(argv.end(), {"-F", target.ssh_config_file});
    argv.insert(argv.end(),
                {"-o", "BatchMode=yes", "-o", "ConnectTimeout=" + std::to_string(target.connect_timeout_s)});
    std::string earlier;
    for (std::size_t i = 0; i + 1 < resolved.jump.size(); ++i)
      earlier += (earlier.empty() ? "" : ",") + resolved.jump[i];
    if (!earlier.empty()) argv.insert(argv.end(), {"-J", earlier});
    argv.insert(argv.end(), {"-W", "[" + host + "]:" + std::to_string(port), "--", resolved.jump.back()});
    const std::string command = "exec " + shell_join(argv) + " 2>" + shell_quote(err_file_);
    if (ssh_options_set(s, SSH_OPTIONS_PROXYCOMMAND, command.c_str()) != SSH_OK) {
      return make_error(std::string("ssh: cannot set the ProxyJump command: ") + ssh_get_error(s));
    }
    return {};
  }

  // The failure, naming the jump host and hop from what OpenSSH's client said.
  std::string explain(const SshTarget& target, const std::string& where, const SshResolved& resolved,
                      const std::string& why) const {
    std::ifstream in(err_file_);
    std::string said, line;
    while (std::getline(in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (!line.empty()) said += (said.empty() ? "" : "; ") + line;
    }
    const std::size_t n = resolved.jump.size();
    std::size_t hop = 0;  // 1-based hop that failed; n + 1: the last jump host could not reach the worker
    if (said.find("open failed") != std::string::npos || said.find("stdio forwarding failed") != std::string::npos) {
      hop = n + 1;
    }
    // OpenSSH names a hop by its HostName and port, or by the name it could not resolve.
    for (std::size_t i = 0; i < n && hop == 0; ++i) {
      const SshTarget h = hop_target(target, resolved.jump[i]);
      if (said.find("hostname " + h.host + ":") != std::string::npos) hop = i + 1;
      if (auto r = resolve_ssh_target(h); r.ok()) {
        if (said.find("host " + r->hostname + " port " + std::to_string(r->port) + ":") != std::string::npos)
          hop = i + 1;
      }
    }
    std::string msg = "cannot connect to " + where + " through ProxyJump ";
    if (hop >= 1 && hop <= n) {
      msg += "jump host " + resolved.jump[hop - 1] + " (hop " + std::to_string(hop) + " of " + std::to_string(n + 1) +
             ") failed";
    } else if (hop == n + 1) {
      msg += "jump host " + resolved.jump.back() + " could not reach the worker (hop " + std::to_string(hop) + " of " +
             std::to_string(n + 1) + ")";
    } else {
      std::string hops;
      for (const auto& h : resolved.jump) hops += (hops.empty() ? "" : ",") + h;
      msg += hops + " failed";
    }
    return msg + ": " + (said.empty() ? why : said);
  }

 private:
  std::string err_file_;
};

}  // namespace

SshSession::SshSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SshSession::~SshSession() = default;

Result<std::unique_ptr<SshSession>> SshSession::connect(const SshTarget& target, ConnectFailure* failure) {
  init_libssh_once();
  if (failure != nullptr) *failure = ConnectFailure::permanent;
  if (target.host.empty()) return make_error("ssh: no host given");
  auto impl = std::make_unique<Impl>();
  impl->session.reset(ssh_new());
  ssh_session s = impl->session.get();
  if (s == nullptr) return make_error("ssh: cannot allocate a session");
  impl->connect_timeout_s = std::max(1, target.connect_timeout_s);
  impl->max_output_bytes = target.max_output_bytes;
  impl->stall_timeout_s = std::max(0, target.stall_timeout_s);
  impl->where =
      (target.user.empty() ? local_user_name() : target.user) + "@" + target.host + ":" + std::to_string(target.port);

  if (auto r = apply_options(s, target, impl->where); !r) return Error{r.error()};

  // OpenSSH's own reading of the ssh config, for what libssh has no option
  // for (ProxyJump's hops, CertificateFile, HashKnownHosts).
  SshResolved resolved;
  if (auto r = resolve_ssh_target(target); r.ok()) {
    resolved = std::move(r.value());
  } else {
    log::debug(r.error() + "; using libssh's reading of the ssh config alone");
  }

  // The names the connection really uses, after HostName/User/Port of the config.
  const std::string host = session_string_option(s, SSH_OPTIONS_HOST);
  std::string user = session_string_option(s, SSH_OPTIONS_USER);
  if (user.empty()) user = local_user_name();
  unsigned int port = 22;
  ssh_options_get_port(s, &port);
  impl->where = user + "@" + host + ":" + std::to_string(port);

  JumpCommand jump;
  if (!resolved.jump.empty()) {
    if (auto r = jump.install(s, target, resolved, host, port); !r) return Error{r.error()};
  }
  if (ssh_connect(s) != SSH_OK) {
    const std::string why = ssh_get_error(s);
    if (failure != nullptr && is_transient_connect_error(why)) *failure = ConnectFailure::transient;
    if (!resolved.jump.empty()) return make_error(jump.explain(target, impl->where, resolved, why));
    return make_error("cannot connect to " + impl->where + ": " + why);
  }
  auto trusted = verify_host_key(s, target, host, port, resolved);
  if (!trusted) return Error{trusted.error()};
  auto credential = authenticate(s, target, impl->where, resolved);
  if (!credential) return Error{credential.error()};
  enable_tcp_keepalive(ssh_get_fd(s));
  ssh_set_counters(s, nullptr, &impl->received);
  std::string hops;
  for (const auto& h : resolved.jump) hops += (hops.empty() ? "" : ",") + h;
  const char* kex = ssh_get_kex_algo(s);
  const char* cipher = ssh_get_cipher_out(s);
  impl->details = (hops.empty() ? std::string() : "via jump " + hops + ", ") + "kex " + (kex ? kex : "?") +
                  ", cipher " + (cipher ? cipher : "?") + ", host key: " + *trusted + ", login: " + *credential;
  return std::unique_ptr<SshSession>(new SshSession(std::move(impl)));
}

Result<ExecResult> SshSession::Impl::run(const std::string& command, int timeout_s, StdinFeed& feed, bool stdin_used,
                                         int stall_s, const OutputSink* sink, std::unique_ptr<ExecChannel>* keep) {
  ssh_session s = session.get();
  // A held command outlives timeout_s (which only bounds the wait for its first line).
  const int remote_deadline_s = timeout_s > 0 && keep == nullptr ? timeout_s + 5 : 0;
  const std::string guarded = "sh -c " + shell_quote(kGuard) + " rch-guard " + std::to_string(remote_deadline_s) +
                              (stdin_used ? " 1 " : " 0 ") + shell_quote(command);
  const bool has_deadline = timeout_s > 0;
  const auto deadline = Clock::now() + std::chrono::seconds(std::max(0, timeout_s));
  const auto ms_until = [](Clock::time_point t) {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count());
  };
  const auto remaining_ms = [&] { return has_deadline ? ms_until(deadline) : LONG_MAX; };
  const auto lost = [&](const char* during) { return fail(std::string("connection lost ") + during); };

  ShortLibsshWaits short_waits(*this);
  const Pump pump(s);
  if (!pump.ok()) return make_error("ssh: cannot create an event loop (" + where + ")");
  auto channel = std::make_unique<ExecChannel>(s);
  ssh_channel ch = channel->get();
  if (ch == nullptr) return fail("cannot create a channel");

  ExecResult result;
  // Retries a libssh call that answers SSH_AGAIN until the server replied.
  // The reply must come within the connect timeout; false: the exec deadline passed.
  const auto reply_deadline = Clock::now() + std::chrono::seconds(connect_timeout_s);
  const auto await_reply = [&](const auto& call, const char* what) -> Result<bool> {
    for (;;) {
      const int rc = call();
      if (rc == SSH_OK) return true;
      if (rc != SSH_AGAIN) return fail(what);
      if (remaining_ms() <= 0) return false;
      if (ms_until(reply_deadline) <= 0) {
        return make_error(std::string(what) + " (" + where + "): no answer within " +
                          std::to_string(connect_timeout_s) + " s");
      }
      pump.wait(std::min(ms_until(reply_deadline), remaining_ms()));
    }
  };
  auto opened = await_reply([&] { return ssh_channel_open_session(ch); }, "cannot open a session channel");
  if (!opened) return Error{opened.error()};
  bool started = false;
  if (*opened) {
    auto exec_ok =
        await_reply([&] { return ssh_channel_request_exec(ch, guarded.c_str()); }, "cannot start the command");
    if (!exec_ok) return Error{exec_ok.error()};
    started = *exec_ok;
  }
  result.timed_out = !started;

  // Progress: bytes the server accepted or sent (window adjusts count).
  auto last_progress = Clock::now();
  auto last_received = received.in_bytes;
  const auto stalled = [&] {
    if (received.in_bytes != last_received) {
      last_received = received.in_bytes;
      last_progress = Clock::now();
    }
    return stall_s > 0 && Clock::now() - last_progress >= std::chrono::seconds(stall_s);
  };
  std::vector<char> buf(64 * 1024);
  std::size_t kept[2] = {0, 0};  // bytes of stdout, stderr kept (under the cap)
  bool eof_sent = false;
  bool closed = false;
  while (started) {
    bool progress = false;
    // Never write more than the server's window: it then always accepts the
    // bytes, so a command busy writing output can't block our write forever.
    if (!eof_sent) {
      auto chunk = feed.peek();
      if (!chunk) return Error{chunk.error()};
      if (chunk->empty() && !stdin_used) {
        // The guard's watcher reads stdin: EOF only by closing the channel.
      } else if (chunk->empty()) {
        if (ssh_channel_send_eof(ch) == SSH_ERROR && !ssh_channel_is_closed(ch)) return lost("sending EOF");
        eof_sent = true;
        progress = true;
      } else if (const std::uint32_t window = ssh_channel_window_size(ch); window > 0) {
        const auto n = static_cast<std::uint32_t>(std::min<std::size_t>({chunk->size(), window, kChunk}));
        const int written = ssh_channel_write(ch, chunk->data(), n);
        if (written == SSH_ERROR) {
          if (!ssh_is_connected(s)) return lost("writing stdin");
          // The command exited or closed stdin: stop feeding, keep its output.
          feed.abandon();
          eof_sent = true;
        } else if (written > 0) {
          feed.consume(static_cast<std::size_t>(written));
          last_progress = Clock::now();
          progress = true;
        }
      }
    }
    for (int is_stderr = 0; is_stderr <= 1; ++is_stderr) {
      const int n = ssh_channel_read_nonblocking(ch, buf.data(), static_cast<std::uint32_t>(buf.size()), is_stderr);
      if (n == SSH_ERROR) {
        if (!ssh_is_connected(s)) return lost("reading output");
        closed = true;
      } else if (n > 0) {
        // Past the cap the bytes are still read (the command must not block
        // on a full window) but dropped.
        const std::size_t room = max_output_bytes - std::min(max_output_bytes, kept[is_stderr]);
        const auto got = static_cast<std::size_t>(n);
        const std::string_view part(buf.data(), std::min(got, room));
        kept[is_stderr] += part.size();
        if (sink == nullptr) {
          (is_stderr ? result.err : result.out).append(part);
        } else if (!part.empty()) {
          (*sink)(is_stderr == 1, part);
        }
        if (got > room) (is_stderr ? result.err_truncated : result.out_truncated) = true;
        progress = true;
        if (keep != nullptr && !is_stderr && result.out.find('\n') != std::string::npos) {
          *keep = std::move(channel);
          return result;
        }
      }
    }
    // Streaming ends once both sides sent EOF and the output is drained, or
    // the channel closed. A remote EOF alone is not the end: a command may
    // close stdout and stderr and still read its stdin (`cat >f 2>&1`).
    if (closed || ssh_channel_is_closed(ch) ||
        ((eof_sent || !stdin_used) && ssh_channel_is_eof(ch) && ssh_channel_poll(ch, 0) <= 0 &&
         ssh_channel_poll(ch, 1) <= 0)) {
      if (!ssh_is_connected(s)) return lost("reading output");
      break;
    }
    if (stalled()) result.stalled_s = stall_s;
    if (remaining_ms() <= 0 || result.stalled_s > 0) {
      result.timed_out = true;
      break;
    }
    if (!progress) pump.wait(remaining_ms());
  }

  // The exit status follows the output's EOF.
  while (started && !result.timed_out) {
    const int status = ssh_channel_get_exit_status(ch);
    if (status >= 0) {
      result.exit_code = status;
      break;
    }
    if (!ssh_is_connected(s)) return lost("waiting for the exit status");
    if (ssh_channel_is_closed(ch)) {
      // Closed without a status: killed by a signal, or the server did not say.
      if (channel->exit_signal) result.exit_code = signal_exit_code(*channel->exit_signal);
      break;
    }
    if (stalled()) result.stalled_s = stall_s;
    if (remaining_ms() <= 0 || result.stalled_s > 0) {
      result.timed_out = true;
      break;
    }
    pump.wait(remaining_ms());
  }

  if (result.stalled_s > 0) return result;  // the caller drops the connection
  if (result.timed_out) {
    // The channel's EOF has the guard end the command's process group.
    if (ssh_channel_is_open(ch)) ssh_channel_close(ch);
    if (!ssh_is_connected(s)) return lost("after the timeout");
    result.exit_code = -1;
  }
  return result;
}

Result<ExecResult> SshSession::exec(const std::string& command, int timeout_s, std::string_view stdin_data) {
  StdinFeed feed(stdin_data);
  return impl_->run(command, timeout_s, feed, !stdin_data.empty(), 0);
}

Result<ExecResult> SshSession::exec_streaming(const std::string& command, int timeout_s, const OutputSink& sink) {
  StdinFeed feed(std::string_view{});
  return impl_->run(command, timeout_s, feed, false, 0, &sink);
}

Result<ExecResult> SshSession::exec_with_input_file(const std::string& command, const std::filesystem::path& file,
                                                    int timeout_s, const std::function<void(std::uint64_t)>& on_sent) {
  FilePtr f(std::fopen(file.c_str(), "rb"));
  if (!f) return make_error("cannot open " + file.string() + ": " + std::strerror(errno));
  StdinFeed feed(std::move(f), file.string());
  std::uint64_t sent = 0;
  if (on_sent) {
    std::error_code ec;
    const std::uint64_t size = std::filesystem::file_size(file, ec);
    auto last = Clock::now() - std::chrono::seconds(1);
    // Throttled: a 256 KiB chunk goes every ~0.5 ms at full speed.
    feed.on_consume = [&](std::size_t n) {
      sent += n;
      const auto now = Clock::now();
      if (now - last < std::chrono::milliseconds(100) && sent != size) return;
      last = now;
      on_sent(sent);
    };
  }
  auto r = impl_->run(command, timeout_s, feed, true, impl_->stall_timeout_s);
  // A hung worker: the next command or the close would only stall again.
  // Dropping the connection also gives the guard's stdin EOF once it runs again.
  if (r && r->stalled_s > 0) {
    for (auto& [id, channel] : impl_->held) channel->forget();
    ssh_silent_disconnect(impl_->session.get());
  }
  return r;
}

Result<SshSession::Hold> SshSession::hold(const std::string& command, int timeout_s) {
  StdinFeed no_input({});
  std::unique_ptr<ExecChannel> channel;
  auto r = impl_->run(command, timeout_s, no_input, false, 0, nullptr, &channel);
  if (!r) return Error{r.error()};
  Hold hold;
  if (channel) {
    hold.id = ++impl_->last_hold_id;
    impl_->held.emplace(hold.id, std::move(channel));
    hold.first_line = r->out.substr(0, r->out.find('\n'));
  } else {
    hold.ended = std::move(*r);
  }
  return hold;
}

bool SshSession::holding(int id) const {
  const auto it = impl_->held.find(id);
  if (it == impl_->held.end()) return false;
  ssh_channel ch = it->second->get();
  return ch != nullptr && ssh_is_connected(impl_->session.get()) != 0 && ssh_channel_is_open(ch) != 0 &&
         ssh_channel_is_eof(ch) == 0;
}

void SshSession::release(int id) { impl_->held.erase(id); }

bool SshSession::alive() const {
  ssh_session s = impl_->session.get();
  if (ssh_is_connected(s) == 0) return false;
  // A closed peer makes the socket readable with nothing to read; peeking
  // leaves any real data for libssh.
  pollfd p{ssh_get_fd(s), POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return true;
  if ((p.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) return false;
  char c;
  const ssize_t n = recv(p.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

const std::string& SshSession::remote_home() {
  if (!impl_->home.empty()) return impl_->home;
  auto r = exec("printf %s \"$HOME\"", impl_->connect_timeout_s);
  if (!r) {
    log::warn("cannot resolve $HOME on " + impl_->where + ": " + r.error());
  } else if (r->exit_code != 0 || r->out.empty()) {
    log::warn("cannot resolve $HOME on " + impl_->where + ": exit " + std::to_string(r->exit_code) + " " + r->err);
  } else {
    impl_->home = std::move(r->out);
  }
  return impl_->home;
}

const std::string& SshSession::where() const { return impl_->where; }

const std::string& SshSession::details() const { return impl_->details; }

std::size_t SshSession::max_output_bytes() const { return impl_->max_output_bytes; }

}  // namespace rch
