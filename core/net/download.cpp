// libcurl transfers behind http_get and download_file. One easy handle per
// call (the calls run on the blocking pool, concurrently); the body goes to a
// Sink that is only opened once a 2xx response is known, so error pages and
// redirect bodies never reach the caller's buffer or the .part file.
#include "core/net/download.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>

#include "core/net/curl_common.hpp"
#include "core/store/dirs.hpp"
#include "core/util/unique_fd.hpp"

namespace rch {
namespace {

namespace fs = std::filesystem;

using net::is_https;
using net::starts_with_nocase;

constexpr std::size_t kExcerptBytes = 512;

std::string errno_text(int err) { return std::strerror(err); }

// Where a 2xx body goes. begin() runs once, before the first byte, with the
// file offset the body starts at (0 = from scratch).
class Sink {
 public:
  virtual ~Sink() = default;
  virtual Result<void> begin(std::uint64_t offset) = 0;
  virtual Result<void> write(const char* data, std::size_t size) = 0;
};

class StringSink final : public Sink {
 public:
  Result<void> begin(std::uint64_t) override {
    body.clear();
    return {};
  }
  Result<void> write(const char* data, std::size_t size) override {
    body.append(data, size);
    return {};
  }
  std::string body;
};

// Writes the .part file. It is opened lazily so a refused or failed request
// does not create (or truncate) it.
class PartFileSink final : public Sink {
 public:
  explicit PartFileSink(fs::path part) : part_(std::move(part)) {}

  Result<void> begin(std::uint64_t offset) override {
    // O_NOFOLLOW: a symlink planted at the .part name must not redirect our writes.
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (offset == 0 ? O_TRUNC : 0);
    fd_.reset(::open(part_.c_str(), flags, 0644));
    if (fd_.get() < 0) return make_error("cannot open " + part_.string() + ": " + errno_text(errno));
    // Drop anything past the resume point (a .part that grew since we sized it).
    if (::ftruncate(fd_.get(), static_cast<off_t>(offset)) != 0 ||
        ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_SET) < 0)
      return make_error("cannot position " + part_.string() + ": " + errno_text(errno));
    return {};
  }

  Result<void> write(const char* data, std::size_t size) override {
    while (size > 0) {
      ssize_t n = ::write(fd_.get(), data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return make_error("cannot write " + part_.string() + ": " + errno_text(errno));
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return {};
  }

  bool opened() const { return fd_.get() >= 0; }

  Result<void> sync_and_close() {
    if (::fsync(fd_.get()) != 0) return make_error("cannot fsync " + part_.string() + ": " + errno_text(errno));
    if (::close(fd_.release()) != 0) return make_error("cannot close " + part_.string() + ": " + errno_text(errno));
    return {};
  }

 private:
  fs::path part_;
  UniqueFd fd_;
};

// State shared with the libcurl callbacks for one request.
struct Transfer {
  Transfer(CURL* c, const std::string& u, const DownloadOptions& o, Sink& s, std::uint64_t from)
      : curl(c), url(u), options(o), sink(s), resume_from(from) {}

  CURL* curl;
  const std::string& url;
  const DownloadOptions& options;
  Sink& sink;
  std::uint64_t resume_from;  // Range start we asked for (0 = no Range)

  // Of the response whose headers arrive now (reset on every status line, as
  // redirects bring several responses).
  std::string reason;
  std::optional<std::uint64_t> range_start;
  std::optional<std::uint64_t> range_total;

  bool body_started = false;
  long status = 0;
  std::uint64_t offset = 0;  // file offset of the body's first byte
  std::uint64_t total = 0;   // whole-file size, 0 if unknown
  std::uint64_t received = 0;
  std::string excerpt;        // start of a non-2xx body, for the error message
  std::string error;          // set when a callback aborts the transfer
  bool bad_range = false;     // a 206 that does not continue our .part
  std::exception_ptr thrown;  // from the user's progress callback

  bool is_success() const { return status >= 200 && status < 300; }

  // Decides, from the final response's headers, where the body goes.
  bool start_body() {
    body_started = true;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (!is_success()) return true;  // body kept only as an excerpt
    curl_off_t length = -1;
    curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    if (status == 206) {
      if (resume_from == 0 || range_start != resume_from) {
        error = "GET " + url + ": server answered 206 for bytes from " +
                (range_start ? std::to_string(*range_start) : std::string("?")) + ", asked for " +
                std::to_string(resume_from);
        bad_range = true;
        return false;
      }
      offset = resume_from;
      total = range_total ? *range_total : (length >= 0 ? resume_from + static_cast<std::uint64_t>(length) : 0);
    } else {
      // A 200 to a Range request is the whole file: start over.
      offset = 0;
      total = length >= 0 ? static_cast<std::uint64_t>(length) : 0;
    }
    if (options.max_bytes != 0 && total > options.max_bytes) {
      error = "refusing " + url + ": it is " + std::to_string(total) + " bytes, over the limit of " +
              std::to_string(options.max_bytes) + " bytes";
      return false;
    }
    if (auto r = sink.begin(offset); !r) {
      error = r.error();
      return false;
    }
    return true;
  }
};

// "Content-Range: bytes 100-199/200" or "bytes */200" (the latter with 416).
void parse_content_range(std::string_view value, Transfer& t) {
  auto number = [](std::string_view s, std::size_t& pos) -> std::optional<std::uint64_t> {
    std::size_t start = pos;
    std::uint64_t n = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') n = n * 10 + static_cast<std::uint64_t>(s[pos++] - '0');
    if (pos == start || pos - start > 19) return std::nullopt;
    return n;
  };
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (!starts_with_nocase(value, "bytes ")) return;
  value.remove_prefix(6);
  std::size_t pos = 0;
  t.range_start = number(value, pos);
  std::size_t slash = value.find('/');
  if (slash == std::string_view::npos) return;
  pos = slash + 1;
  t.range_total = number(value, pos);
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (starts_with_nocase(line, "HTTP/")) {
    t.range_start.reset();
    t.range_total.reset();
    std::size_t sp = line.find(' ');
    sp = sp == std::string_view::npos ? sp : line.find(' ', sp + 1);
    t.reason = sp == std::string_view::npos ? std::string() : std::string(line.substr(sp + 1));
  } else if (starts_with_nocase(line, "content-range:")) {
    parse_content_range(line.substr(14), t);
  }
  return size * count;
}

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  // Nothing may unwind through libcurl's C frames.
  try {
    if (!t.body_started && !t.start_body()) return 0;
    if (!t.is_success()) {
      std::size_t keep = std::min(n, kExcerptBytes - t.excerpt.size());
      t.excerpt.append(data, keep);
      return t.excerpt.size() < kExcerptBytes ? n : 0;  // enough for the message
    }
    if (t.options.max_bytes != 0 && t.offset + t.received + n > t.options.max_bytes) {
      t.error = "download of " + t.url + " aborted: it grew past the limit of " + std::to_string(t.options.max_bytes) +
                " bytes";
      return 0;
    }
    if (auto r = t.sink.write(data, n); !r) {
      t.error = r.error();
      return 0;
    }
    t.received += n;
    if (t.options.progress) t.options.progress(t.offset + t.received, t.total);
    return n;
  } catch (...) {
    t.thrown = std::current_exception();
    return 0;
  }
}

std::string status_message(const Transfer& t) {
  std::string msg = "GET " + t.url + " failed: HTTP status " + std::to_string(t.status);
  if (!t.reason.empty()) msg += " (" + t.reason + ")";
  // Text and JSON error bodies (GitHub's "API rate limit exceeded") say why.
  char* type = nullptr;
  curl_easy_getinfo(t.curl, CURLINFO_CONTENT_TYPE, &type);
  std::string_view ct = type ? type : "";
  if (!t.excerpt.empty() && (starts_with_nocase(ct, "application/json") || starts_with_nocase(ct, "text/plain"))) {
    std::string text = t.excerpt.substr(0, std::min<std::size_t>(t.excerpt.find('\n'), 200));
    std::replace_if(
        text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }, ' ');
    msg += ": " + text;
  }
  return msg;
}

// One GET into `sink`. `status` receives the final HTTP status (0 if none);
// `bad_range` says the server's 206 did not start where the .part ends.
Result<void> perform(const std::string& url, const DownloadOptions& options, Sink& sink, std::uint64_t resume_from,
                     long& status, bool& bad_range) {
  status = 0;
  bad_range = false;
  net::SecureRequest req;
  req.url = url;
  req.ca_file = options.ca_file;
  req.connect_timeout_ms = 1000L * options.connect_timeout_s;
  req.timeout_ms = 1000L * options.transfer_timeout_s;
  req.user_agent = options.user_agent;
  req.request = "GET " + url;
  req.transfer = "download of " + url;
  auto curl = net::open_secure(req);
  if (!curl) return Error{curl.error()};
  CURL* h = curl->get();
  Transfer t(h, url, options, sink, resume_from);
  const std::string range = std::to_string(resume_from) + "-";

  CURLcode set = CURLE_OK;
  auto opt = [&set](CURLcode rc) {
    if (set == CURLE_OK) set = rc;
  };
  opt(curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header));
  opt(curl_easy_setopt(h, CURLOPT_HEADERDATA, &t));
  opt(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write));
  opt(curl_easy_setopt(h, CURLOPT_WRITEDATA, &t));
  // CURLOPT_RANGE rather than CURLOPT_RESUME_FROM: the latter fails on a 200
  // answer, where we want to start over.
  if (resume_from > 0) opt(curl_easy_setopt(h, CURLOPT_RANGE, range.c_str()));
  if (set != CURLE_OK) return make_error("GET " + url + ": libcurl refused an option: " + curl_easy_strerror(set));

  CURLcode rc = curl_easy_perform(h);
  if (t.thrown) std::rethrow_exception(t.thrown);
  bad_range = t.bad_range;
  if (!t.error.empty()) return make_error(t.error);
  if (rc == CURLE_OK || rc == CURLE_WRITE_ERROR) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &t.status);
    status = t.status;
    if (!t.is_success()) return make_error(status_message(t));
    // An empty body never reaches on_write, yet the sink must still start
    // (an empty file is a file; a 200 to a Range request truncates the .part).
    if (rc == CURLE_OK && !t.body_started) {
      if (!t.start_body()) return make_error(t.error);
    }
  }
  if (rc != CURLE_OK) return make_error(net::curl_error(h, rc, req));
  if (t.total != 0 && t.offset + t.received != t.total)
    return make_error("download of " + url + " interrupted: got " + std::to_string(t.offset + t.received) + " of " +
                      std::to_string(t.total) + " bytes");
  return {};
}

}  // namespace

Result<std::string> http_get(const std::string& url, const DownloadOptions& options) {
  StringSink sink;
  long status = 0;
  bool bad_range = false;
  if (auto r = perform(url, options, sink, 0, status, bad_range); !r) return Error{r.error()};
  return std::move(sink.body);
}

Result<void> download_file(const std::string& url, const fs::path& dest, const DownloadOptions& options) {
  fs::path part = dest;
  part += ".part";
  // Two rounds at most: the second starts from zero after the server could
  // not continue the .part (416: it is as long as the file or longer; or a
  // 206 for other bytes than asked).
  for (int round = 0; round < 2; ++round) {
    std::uint64_t have = 0;
    struct stat st {};
    if (::lstat(part.c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode)) return make_error("refusing to download to " + part.string() + ": not a regular file");
      have = static_cast<std::uint64_t>(st.st_size);
    } else if (errno != ENOENT) {
      return make_error("cannot stat " + part.string() + ": " + errno_text(errno));
    }

    PartFileSink sink(part);
    long status = 0;
    bool bad_range = false;
    auto r = perform(url, options, sink, have, status, bad_range);
    if (!r && (status == 416 || bad_range) && have > 0 && round == 0) {
      if (::unlink(part.c_str()) != 0 && errno != ENOENT)
        return make_error("cannot remove " + part.string() + ": " + errno_text(errno));
      continue;
    }
    if (!r) return r;
    if (auto s = sink.sync_and_close(); !s) return s;
    if (::rename(part.c_str(), dest.c_str()) != 0)
      return make_error("cannot rename " + part.string() + " to " + dest.string() + ": " + errno_text(errno));
    fs::path dir = dest.parent_path();
    return fsync_dir(dir);
  }
  return make_error("GET " + url + " failed: the server could not satisfy a range request even from zero");
}

}  // namespace rch
