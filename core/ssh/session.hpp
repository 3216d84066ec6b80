// SshSession: one authenticated SSH connection to a worker (libssh, kept out
// of this header) and remote command execution with stdin, captured output
// and a deadline. Host keys are checked against a known_hosts file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/ssh/host_key_policy.hpp"
#include "core/util/result.hpp"

namespace rch {

struct SshTarget {
  std::string host;           // a name, an address or a Host alias of the ssh config
  int port = 22;              // 22 leaves the ssh config's Port (if any) in charge
  std::string user;           // empty: ssh config's User, else the local user name
  std::string identity_file;  // empty: ssh-agent, then the default keys
  // The identity's OpenSSH certificate; empty: the ssh config's
  // CertificateFile, else <identity_file>-cert.pub when it exists.
  std::string certificate_file;
  std::string known_hosts_file;  // empty = ~/.ssh/known_hosts
  std::string ssh_config_file;   // empty = ~/.ssh/config; "none" = don't read
  HostKeyPolicy host_key_policy = HostKeyPolicy::strict;
  int connect_timeout_s = 10;  // TCP connect + handshake + auth, and each channel open
  // An exec keeps at most this many bytes of stdout and of stderr each; the
  // rest is read and dropped, so a worker that floods us costs no memory.
  std::size_t max_output_bytes = std::size_t{1} << 20;
  // An upload during which the server accepts no stdin and sends nothing for
  // this long fails as stalled (a hung worker); 0: never.
  int stall_timeout_s = 30;
};

struct ExecResult {
  // The command's exit status; 128+N when killed by signal N (as sh reports
  // it); -1 when it timed out or the server sent no status.
  int exit_code = -1;
  std::string out, err;                               // each at most SshTarget::max_output_bytes
  bool out_truncated = false, err_truncated = false;  // the command printed more than that
  bool timed_out = false;
  int stalled_s = 0;  // > 0: timed out early, an upload made no progress for this many seconds
};

// Why a connect failed. Only a transient one (refused, reset, timed out, no
// route: the host may be rebooting) is worth retrying; authentication and
// host key failures never are.
enum class ConnectFailure { transient, permanent };

// Receives a command's output as it arrives: stderr or stdout, and the bytes.
using OutputSink = std::function<void(bool is_stderr, std::string_view chunk)>;

class SshSession {  // one authenticated libssh session; use from one thread at a time
 public:
  // Connects, verifies the host key, authenticates. Errors name user@host:port;
  // `failure` (if given) says whether an error is transient.
  static Result<std::unique_ptr<SshSession>> connect(const SshTarget& target, ConnectFailure* failure = nullptr);

  // Runs `command` through the remote user's shell, feeds it `stdin_data`
  // then EOF, and collects stdout and stderr until it exits (each capped at
  // max_output_bytes: the excess is read and discarded, the command is never
  // blocked on a full channel, and out/err_truncated say so). After
  // `timeout_s` seconds (<= 0: none) its channel is closed and the result
  // says timed_out; the session stays usable. A non-zero exit is a value,
  // not an error; a lost connection is an error. On the worker the command
  // runs under a guard, in its own process group, which gets SIGTERM (SIGKILL
  // 2 s later) when the channel's stdin reaches EOF (the channel closed, the
  // connection dropped), and SIGKILL 5 s past timeout_s: a command rch gives
  // up on leaves no process behind. Without stdin_data the command reads /dev/null.
  Result<ExecResult> exec(const std::string& command, int timeout_s, std::string_view stdin_data = {});

  // As exec without stdin, but the output goes to `sink` as it arrives (on
  // this thread, before the command ends) instead of into out/err; the cap,
  // the truncation flags, the guard and the timeout are exec's.
  Result<ExecResult> exec_streaming(const std::string& command, int timeout_s, const OutputSink& sink);

  // Streams a local file into the command's stdin (e.g. `cat > tmp`), for
  // uploads. No progress for stall_timeout_s fails it as stalled (timed_out
  // and stalled) and drops the connection: the worker is hung. `on_sent`, if
  // set, gets the bytes sent so far on this thread, at most 10 times a second
  // and once when the input is exhausted (progress for a live view).
  Result<ExecResult> exec_with_input_file(const std::string& command, const std::filesystem::path& file, int timeout_s,
                                          const std::function<void(std::uint64_t)>& on_sent = {});

  // A command started by hold(): while held (id > 0) it runs on beside this
  // session's other commands; otherwise `ended` says how it ended.
  struct Hold {
    int id = 0;
    std::string first_line;  // what it printed when it was left running
    ExecResult ended;
  };

  // Runs `command` (no stdin, under the same guard as exec) until it prints
  // its first whole line, then returns and leaves it running, e.g. to keep a
  // lock on the worker for as long as this session needs it. It ends on
  // release(id), when the session closes, or when the connection drops (the
  // guard kills its process group). If it exits or `timeout_s` passes before
  // a line, the result is not held and `ended` has its outcome.
  Result<Hold> hold(const std::string& command, int timeout_s);
  // True while a held command runs: it has not ended or closed its output.
  bool holding(int id) const;
  // Ends a held command (its channel closes; the guard kills it).
  void release(int id);

  // False once the connection is known to be gone (peer closed or errored);
  // cheap, sends nothing.
  bool alive() const;

  // $HOME of the remote user, resolved on the worker once and cached; empty
  // if it could not be resolved (not cached then).
  const std::string& remote_home();

  // "user@host:port" as resolved through the ssh config, for messages.
  const std::string& where() const;

  // How the connection was made, for the debug log: the jump host (if any),
  // key exchange, cipher, how the host key was trusted, the credential used.
  const std::string& details() const;

  // The cap on each output stream of an exec (SshTarget::max_output_bytes).
  std::size_t max_output_bytes() const;

  SshSession(const SshSession&) = delete;
  SshSession& operator=(const SshSession&) = delete;
  ~SshSession();

 private:
  struct Impl;
  explicit SshSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rch
