// The audit hash chain: linking entries, the head file, the syslog copy.
#include "core/crypto/hash_chain.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/crypto/sha256.hpp"
#include "core/util/unique_fd.hpp"

namespace rch {
namespace {

constexpr std::string_view kPrefix = "{\"prev_hash\":\"";
// {"prev_hash":"<64 hex>","seq":
constexpr std::size_t kSeqAt = kPrefix.size() + 64 + std::string_view("\",\"seq\":").size();

std::string errno_text(const std::string& what, const std::filesystem::path& path) {
  return "cannot " + what + " " + path.string() + ": " + std::strerror(errno);
}

}  // namespace

std::optional<std::uint64_t> chain_seq_of(std::string_view line) {
  if (line.size() <= kSeqAt || line.substr(0, kPrefix.size()) != kPrefix ||
      line.substr(kPrefix.size() + 64, kSeqAt - kPrefix.size() - 64) != "\",\"seq\":") {
    return std::nullopt;
  }
  std::uint64_t seq = 0;
  const char* first = line.data() + kSeqAt;
  const auto [end, ec] = std::from_chars(first, line.data() + line.size(), seq);
  if (ec != std::errc() || end == first) return std::nullopt;
  return seq;
}

std::string link_chain_entry(const std::string& previous, const std::string& line) {
  const std::string prev_hash = previous.empty() ? std::string(64, '0') : sha256_hex(previous);
  const std::uint64_t seq = previous.empty() ? 1 : chain_seq_of(previous).value_or(0) + 1;
  std::string out;
  out.reserve(line.size() + 96);
  out.append(kPrefix).append(prev_hash).append("\",\"seq\":").append(std::to_string(seq));
  if (line.size() > 2) out += ',';
  out.append(line, 1, std::string::npos);
  return out;
}

std::filesystem::path chain_head_path(const std::filesystem::path& log) {
  std::filesystem::path p = log;
  p += ".head";
  return p;
}

Result<void> write_chain_head(const std::filesystem::path& log, const ChainHead& head) {
  const auto path = chain_head_path(log);
  // Padded to a fixed size so an in-place rewrite never leaves a longer old tail.
  std::string text = "{\"seq\":" + std::to_string(head.seq) + ",\"sha256\":\"" + head.hash + "\"}";
  text.resize(127, ' ');
  text += '\n';
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd.valid()) return make_error(errno_text("open", path));
  if (::pwrite(fd.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    return make_error(errno_text("write", path));
  }
  if (::fsync(fd.get()) != 0) return make_error(errno_text("fsync", path));
  return {};
}

Result<std::optional<ChainHead>> read_chain_head(const std::filesystem::path& log) {
  const auto path = chain_head_path(log);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::optional<ChainHead>();
    return make_error(errno_text("open", path));
  }
  char buf[256];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n < 0) return make_error(errno_text("read", path));
  const std::string_view text(buf, static_cast<std::size_t>(n));
  constexpr std::string_view seq_key = "{\"seq\":";
  constexpr std::string_view hash_key = ",\"sha256\":\"";
  ChainHead head;
  const auto bad = [&] { return make_error(path.string() + ": not an audit head ({\"seq\":N,\"sha256\":\"…\"})"); };
  if (text.substr(0, seq_key.size()) != seq_key) return bad();
  const char* first = text.data() + seq_key.size();
  const auto [end, ec] = std::from_chars(first, text.data() + text.size(), head.seq);
  if (ec != std::errc() || end == first) return bad();
  const std::string_view rest(end, static_cast<std::size_t>(text.data() + text.size() - end));
  if (rest.substr(0, hash_key.size()) != hash_key || rest.size() < hash_key.size() + 66) return bad();
  head.hash = std::string(rest.substr(hash_key.size(), 64));
  if (rest.substr(hash_key.size() + 64, 2) != "\"}") return bad();
  return std::optional<ChainHead>(std::move(head));
}

Result<void> send_chain_head_to_syslog(const std::string& socket_path, const std::filesystem::path& log,
                                       const ChainHead& head) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) return make_error("syslog socket path too long: " + socket_path);
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return make_error(std::string("cannot create a socket for syslog: ") + std::strerror(errno));
  // Priority 14: facility user (1), severity info (6).
  const std::string message = "<14>rch-audit[" + std::to_string(::getpid()) + "]: head of " + log.string() +
                              ": seq=" + std::to_string(head.seq) + " sha256=" + head.hash;
  if (::sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr),
               sizeof addr) < 0) {
    return make_error("cannot send the audit head to syslog at " + socket_path + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace rch
