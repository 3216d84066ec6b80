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
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/log/log.hpp"
#include "core/ssh/quote.hpp"

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
struct HashFree {
  void operator()(unsigned char* p) const { ssh_clean_pubkey_hash(&p); }
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
// ends by itself stops the watcher first: what it leaves running on purpose (nohup) stays.
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
    cat >/dev/null
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

std::string local_user_name() {
  if (const passwd* pw = getpwuid(getuid()); pw != nullptr && pw->pw_name != nullptr) return pw->pw_name;
  return "?";
}

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
  std::optional<std::string> exit_signal;

 private:
  ssh_channel channel_;
  ssh_channel_callbacks_struct callbacks_;
};

}  // namespace

struct SshSession::Impl {
  SessionPtr session;
  std::string where;  // user@host:port
  std::string home;
  int connect_timeout_s = 10;
  std::size_t max_output_bytes = 0;
  int stall_timeout_s = 0;
  ssh_counter_struct received{};  // what the server sent: any byte is a sign of life

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
  // > 0: no progress for that long ends the command as stalled.
  Result<ExecResult> run(const std::string& command, int timeout_s, StdinFeed& feed, bool stdin_used, int stall_s);
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

Result<void> verify_host_key(ssh_session s, const SshTarget& target, const std::string& host, unsigned int port) {
  const std::string host_port = host + ":" + std::to_string(port);
  ssh_key raw_key = nullptr;
  if (ssh_get_server_publickey(s, &raw_key) != SSH_OK) {
    return make_error("cannot get the host key of " + host_port + ": " + ssh_get_error(s));
  }
  KeyPtr key(raw_key);
  unsigned char* raw_hash = nullptr;
  std::size_t hash_len = 0;
  std::string fingerprint = "?";
  if (ssh_get_publickey_hash(key.get(), SSH_PUBLICKEY_HASH_SHA256, &raw_hash, &hash_len) == SSH_OK) {
    std::unique_ptr<unsigned char, HashFree> hash(raw_hash);
    CharPtr fp(ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash.get(), hash_len));
    if (fp) fingerprint = fp.get();
  }
  const std::string key_desc = std::string(ssh_key_type_to_char(ssh_key_type(key.get()))) + " " + fingerprint;
  std::string known_hosts = session_string_option(s, SSH_OPTIONS_KNOWNHOSTS);
  if (known_hosts.empty()) known_hosts = "~/.ssh/known_hosts";
  // How known_hosts names this host: plain on port 22, [host]:port otherwise.
  const std::string entry_name = port == 22 ? host : "[" + host + "]:" + std::to_string(port);

  switch (ssh_session_is_known_server(s)) {
    case SSH_KNOWN_HOSTS_OK:
      return {};
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER:
      return make_error("host key of " + host_port + " has CHANGED: the server now offers " + key_desc +
                        ", which does not match " + known_hosts +
                        ". This may be a man-in-the-middle attack; refusing to connect. If the worker was really "
                        "reinstalled, remove the old key (ssh-keygen -R '" +
                        entry_name + "' -f " + known_hosts + ") and add the new one after checking its fingerprint");
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN:
      if (target.host_key_policy == HostKeyPolicy::strict) {
        return make_error("host key of " + host_port + " is not in " + known_hosts + " (server offers " + key_desc +
                          "); check the fingerprint, then add it: ssh-keyscan -p " + std::to_string(port) + " " + host +
                          " >> " + known_hosts);
      }
      if (ssh_session_update_known_hosts(s) != SSH_OK) {
        return make_error("cannot add the host key of " + host_port + " to " + known_hosts + ": " + ssh_get_error(s));
      }
      log::warn("added new host key of " + host_port + " (" + key_desc + ") to " + known_hosts);
      return {};
    case SSH_KNOWN_HOSTS_ERROR:
      break;
  }
  return make_error("cannot check the host key of " + host_port + " against " + known_hosts + ": " + ssh_get_error(s));
}

Result<void> authenticate(ssh_session s, const SshTarget& target, const std::string& where) {
  std::vector<std::string> tried;
  if (!target.identity_file.empty()) {
    if (access(target.identity_file.c_str(), R_OK) != 0) {
      return make_error("cannot read identity file " + target.identity_file + " for " + where + ": " +
                        std::strerror(errno));
    }
    ssh_key raw_key = nullptr;
    if (ssh_pki_import_privkey_file(target.identity_file.c_str(), nullptr, nullptr, nullptr, &raw_key) != SSH_OK) {
      return make_error("cannot load identity file " + target.identity_file + " for " + where +
                        ": not a private key, or protected by a passphrase (use ssh-agent)");
    }
    KeyPtr key(raw_key);
    const int rc = ssh_userauth_publickey(s, nullptr, key.get());
    if (rc == SSH_AUTH_SUCCESS) return {};
    if (rc == SSH_AUTH_ERROR) return make_error("authentication of " + where + " failed: " + ssh_get_error(s));
    tried.push_back("identity file " + target.identity_file);
  }
  if (const char* sock = std::getenv("SSH_AUTH_SOCK"); sock != nullptr && *sock != '\0') {
    const int rc = ssh_userauth_agent(s, nullptr);
    if (rc == SSH_AUTH_SUCCESS) return {};
    tried.push_back("ssh-agent");
  }
  // The default keys (~/.ssh/id_*) and any IdentityFile of the ssh config.
  const int rc = ssh_userauth_publickey_auto(s, nullptr, nullptr);
  if (rc == SSH_AUTH_SUCCESS) return {};
  tried.push_back("default keys");

  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  return make_error("authentication of " + where + " failed (tried " + list + "): " + ssh_get_error(s));
}

}  // namespace

SshSession::SshSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SshSession::~SshSession() = default;

Result<std::unique_ptr<SshSession>> SshSession::connect(const SshTarget& target) {
  init_libssh_once();
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

  // The names the connection really uses, after HostName/User/Port of the config.
  const std::string host = session_string_option(s, SSH_OPTIONS_HOST);
  std::string user = session_string_option(s, SSH_OPTIONS_USER);
  if (user.empty()) user = local_user_name();
  unsigned int port = 22;
  ssh_options_get_port(s, &port);
  impl->where = user + "@" + host + ":" + std::to_string(port);

  if (ssh_connect(s) != SSH_OK) {
    return make_error("cannot connect to " + impl->where + ": " + ssh_get_error(s));
  }
  if (auto r = verify_host_key(s, target, host, port); !r) return Error{r.error()};
  if (auto r = authenticate(s, target, impl->where); !r) return Error{r.error()};
  enable_tcp_keepalive(ssh_get_fd(s));
  ssh_set_counters(s, nullptr, &impl->received);
  return std::unique_ptr<SshSession>(new SshSession(std::move(impl)));
}

Result<ExecResult> SshSession::Impl::run(const std::string& command, int timeout_s, StdinFeed& feed, bool stdin_used,
                                         int stall_s) {
  ssh_session s = session.get();
  const std::string guarded = "sh -c " + shell_quote(kGuard) + " rch-guard " +
                              std::to_string(timeout_s > 0 ? timeout_s + 5 : 0) + (stdin_used ? " 1 " : " 0 ") +
                              shell_quote(command);
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
  ExecChannel channel(s);
  ssh_channel ch = channel.get();
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
        std::string& into = is_stderr ? result.err : result.out;
        const std::size_t room = max_output_bytes - std::min(max_output_bytes, into.size());
        const auto got = static_cast<std::size_t>(n);
        into.append(buf.data(), std::min(got, room));
        if (got > room) (is_stderr ? result.err_truncated : result.out_truncated) = true;
        progress = true;
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
      if (channel.exit_signal) result.exit_code = signal_exit_code(*channel.exit_signal);
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
  if (r && r->stalled_s > 0) ssh_silent_disconnect(impl_->session.get());
  return r;
}

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

std::size_t SshSession::max_output_bytes() const { return impl_->max_output_bytes; }

}  // namespace rch
