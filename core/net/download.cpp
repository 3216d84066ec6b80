// libcurl transfers behind http_get and download_file. One easy handle per
// call (the calls run on the blocking pool, concurrently); the body goes to a
// Sink that is only opened once a 2xx response is known, so error pages and
// redirect bodies never reach the caller's buffer or the .part file.
#include "core/net/download.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include "core/store/dirs.hpp"
#include "core/util/unique_fd.hpp"

namespace rch {
namespace {

namespace fs = std::filesystem;

constexpr long kMaxRedirects = 5;
constexpr std::size_t kExcerptBytes = 512;

struct CurlDeleter {
  void operator()(CURL* curl) const noexcept { curl_easy_cleanup(curl); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

Result<void> global_init() {
  // curl_global_init is not thread-safe and must run once per process.
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) return make_error(std::string("libcurl initialisation failed: ") + curl_easy_strerror(rc));
  return {};
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != lower(prefix[i])) return false;
  return true;
}

bool is_https(std::string_view url) { return starts_with_nocase(url, "https://"); }

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

struct SslCtxData {
  const std::string* ca_file;
  std::string error;
};

// Adds the extra CA bundle to the store libcurl has already filled with the
// system CAs, so it extends rather than replaces them.
CURLcode add_ca_file(CURL*, void* ssl_ctx, void* user) {
  auto& d = *static_cast<SslCtxData*>(user);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  ERR_clear_error();
  if (X509_STORE_load_file(store, d.ca_file->c_str()) != 1) {
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    d.error = buf;
    return CURLE_SSL_CACERT_BADFILE;
  }
  return CURLE_OK;
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

std::string curl_message(const Transfer& t, CURLcode rc, const char* errbuf, const SslCtxData& ssl) {
  const std::string& url = t.url;
  std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
  switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
      return "TLS certificate of " + url + " not trusted: " + detail;
    case CURLE_SSL_CACERT_BADFILE:
      // Our callback records why the extra bundle failed; otherwise libcurl
      // could not load the system store it loads first.
      if (!ssl.error.empty()) return "cannot load CA bundle '" + t.options.ca_file + "' for " + url + ": " + ssl.error;
      return "cannot load the system CA store for " + url + ": " + detail;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
      return "TLS handshake with " + url + " failed: " + detail;
    case CURLE_COULDNT_RESOLVE_HOST:
      return "cannot resolve the host of " + url + ": " + detail;
    case CURLE_COULDNT_CONNECT:
      return "cannot connect to " + url + ": " + detail;
    case CURLE_OPERATION_TIMEDOUT:
      return "download of " + url + " timed out: " + detail;
    case CURLE_TOO_MANY_REDIRECTS:
      return "GET " + url + " failed: more than " + std::to_string(kMaxRedirects) + " redirects";
    case CURLE_UNSUPPORTED_PROTOCOL: {
      long redirects = 0;
      curl_easy_getinfo(t.curl, CURLINFO_REDIRECT_COUNT, &redirects);
      char* target = nullptr;
      curl_easy_getinfo(t.curl, CURLINFO_EFFECTIVE_URL, &target);
      if (redirects > 0 || (target && url != target)) {
        std::string to = target ? target : "?";
        if (is_https(url))
          return "refusing redirect from " + url + " to " + to + ": an https download may only redirect to https";
        return "refusing redirect from " + url + " to " + to + ": only http and https are allowed";
      }
      return "refusing " + url + ": only http:// and https:// URLs are allowed";
    }
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
      return "download of " + url + " interrupted: " + detail;
    default:
      return "GET " + url + " failed: " + detail;
  }
}

// One GET into `sink`. `status` receives the final HTTP status (0 if none);
// `bad_range` says the server's 206 did not start where the .part ends.
Result<void> perform(const std::string& url, const DownloadOptions& options, Sink& sink, std::uint64_t resume_from,
                     long& status, bool& bad_range) {
  status = 0;
  bad_range = false;
  if (!starts_with_nocase(url, "http://") && !is_https(url))
    return make_error("refusing " + url + ": only http:// and https:// URLs are allowed");
  if (options.connect_timeout_s < 0 || options.transfer_timeout_s < 0)
    return make_error("GET " + url + ": timeouts may not be negative");
  if (!options.ca_file.empty() && ::access(options.ca_file.c_str(), R_OK) != 0)
    return make_error("cannot read CA bundle '" + options.ca_file + "' for " + url + ": " + errno_text(errno));
  if (auto r = global_init(); !r) return r;

  CurlPtr curl(curl_easy_init());
  if (!curl) return make_error("GET " + url + ": cannot create a libcurl handle");
  CURL* h = curl.get();
  Transfer t(h, url, options, sink, resume_from);
  SslCtxData ssl{&options.ca_file, {}};
  char errbuf[CURL_ERROR_SIZE] = {};
  const std::string range = std::to_string(resume_from) + "-";

  CURLcode set = CURLE_OK;
  auto opt = [&set](CURLcode rc) {
    if (set == CURLE_OK) set = rc;
  };
  opt(curl_easy_setopt(h, CURLOPT_URL, url.c_str()));
  opt(curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf));
  // Redirects may not leave http(s), and an https URL may not be led to
  // plain http, where the content could be swapped in transit.
#if LIBCURL_VERSION_NUM >= 0x075500
  opt(curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https"));
  opt(curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, is_https(url) ? "https" : "http,https"));
#else
  opt(curl_easy_setopt(h, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS)));
  opt(curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS,
                       static_cast<long>(is_https(url) ? CURLPROTO_HTTPS : CURLPROTO_HTTP | CURLPROTO_HTTPS)));
#endif
  opt(curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L));
  opt(curl_easy_setopt(h, CURLOPT_MAXREDIRS, kMaxRedirects));
  opt(curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L));
  opt(curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L));
  if (!options.ca_file.empty()) {
#if LIBCURL_VERSION_NUM >= 0x075700
    // The callback edits the CA store; a store cached across handles must not carry the edit.
    opt(curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, 0L));
#endif
    // Needs an OpenSSL-backed libcurl; with another TLS backend the bundle
    // replaces the system store instead of extending it.
    if (curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, add_ca_file) == CURLE_OK) {
      opt(curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, &ssl));
    } else {
      opt(curl_easy_setopt(h, CURLOPT_CAINFO, options.ca_file.c_str()));
    }
  }
  opt(curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options.connect_timeout_s)));
  opt(curl_easy_setopt(h, CURLOPT_TIMEOUT, static_cast<long>(options.transfer_timeout_s)));
  // Signals cannot be used for DNS timeouts in a multi-threaded process.
  opt(curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L));
  opt(curl_easy_setopt(h, CURLOPT_USERAGENT, options.user_agent.c_str()));
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
  if (rc != CURLE_OK) return make_error(curl_message(t, rc, errbuf, ssl));
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
