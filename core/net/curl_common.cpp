// The libcurl setup shared by downloads and rch.http requests (see the header).
#include "core/net/curl_common.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace rch::net {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

Result<void> global_init() {
  // curl_global_init is not thread-safe and must run once per process.
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) return make_error(std::string("libcurl initialisation failed: ") + curl_easy_strerror(rc));
  return {};
}

// Adds the extra CA bundle to the store libcurl has already filled with the
// system CAs, so it extends rather than replaces them.
CURLcode add_ca_file(CURL*, void* ssl_ctx, void* user) {
  auto& r = *static_cast<SecureRequest*>(user);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  ERR_clear_error();
  if (X509_STORE_load_file(store, r.ca_file.c_str()) != 1) {
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    r.ca_error = buf;
    return CURLE_SSL_CACERT_BADFILE;
  }
  return CURLE_OK;
}

}  // namespace

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != lower(prefix[i])) return false;
  return true;
}

bool is_https(std::string_view url) { return starts_with_nocase(url, "https://"); }

Result<CurlPtr> open_secure(SecureRequest& r) {
  const std::string& url = r.url;
  if (!starts_with_nocase(url, "http://") && !is_https(url))
    return make_error("refusing " + url + ": only http:// and https:// URLs are allowed");
  if (r.connect_timeout_ms < 0 || r.timeout_ms < 0) return make_error(r.request + ": timeouts may not be negative");
  if (!r.ca_file.empty() && ::access(r.ca_file.c_str(), R_OK) != 0)
    return make_error("cannot read CA bundle '" + r.ca_file + "' for " + url + ": " + std::strerror(errno));
  if (auto init = global_init(); !init) return Error{init.error()};

  CurlPtr curl(curl_easy_init());
  if (!curl) return make_error(r.request + ": cannot create a libcurl handle");
  CURL* h = curl.get();
  CURLcode set = CURLE_OK;
  auto opt = [&set](CURLcode rc) {
    if (set == CURLE_OK) set = rc;
  };
  opt(curl_easy_setopt(h, CURLOPT_URL, url.c_str()));
  opt(curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r.errbuf));
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
  if (!r.ca_file.empty()) {
#if LIBCURL_VERSION_NUM >= 0x075700
    // The callback edits the CA store; a store cached across handles must not carry the edit.
    opt(curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, 0L));
#endif
    // Needs an OpenSSL-backed libcurl; with another TLS backend the bundle
    // replaces the system store instead of extending it.
    if (curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, add_ca_file) == CURLE_OK) {
      opt(curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, &r));
    } else {
      opt(curl_easy_setopt(h, CURLOPT_CAINFO, r.ca_file.c_str()));
    }
  }
  opt(curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r.connect_timeout_ms));
  opt(curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r.timeout_ms));
  opt(curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L));
  opt(curl_easy_setopt(h, CURLOPT_USERAGENT, r.user_agent.c_str()));
  if (set != CURLE_OK) return make_error(r.request + ": libcurl refused an option: " + curl_easy_strerror(set));
  return curl;
}

std::string curl_error(CURL* h, CURLcode rc, const SecureRequest& r) {
  const std::string& url = r.url;
  std::string detail = r.errbuf[0] != '\0' ? std::string(r.errbuf) : std::string(curl_easy_strerror(rc));
  switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
      return "TLS certificate of " + url + " not trusted: " + detail;
    case CURLE_SSL_CACERT_BADFILE:
      // Our callback records why the extra bundle failed; otherwise libcurl
      // could not load the system store it loads first.
      if (!r.ca_error.empty()) return "cannot load CA bundle '" + r.ca_file + "' for " + url + ": " + r.ca_error;
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
      return r.transfer + " timed out: " + detail;
    case CURLE_TOO_MANY_REDIRECTS:
      return r.request + " failed: more than " + std::to_string(kMaxRedirects) + " redirects";
    case CURLE_UNSUPPORTED_PROTOCOL: {
      long redirects = 0;
      curl_easy_getinfo(h, CURLINFO_REDIRECT_COUNT, &redirects);
      char* target = nullptr;
      curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &target);
      if (redirects > 0 || (target && url != target)) {
        std::string to = target ? target : "?";
        if (is_https(url))
          return "refusing redirect from " + url + " to " + to + ": an https URL may only redirect to https";
        return "refusing redirect from " + url + " to " + to + ": only http and https are allowed";
      }
      return "refusing " + url + ": only http:// and https:// URLs are allowed";
    }
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
      return r.transfer + " interrupted: " + detail;
    default:
      return r.request + " failed: " + detail;
  }
}

}  // namespace rch::net
