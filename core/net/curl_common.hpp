// What every libcurl request of rch shares (download.cpp, http.cpp): one
// global init, the rules on schemes, redirects and TLS (verification always
// on; an extra CA extends the system store), and error messages that name
// the URL. Internal to core/net.
#pragma once

#include <curl/curl.h>

#include <memory>
#include <string>
#include <string_view>

#include "core/util/result.hpp"

namespace rch::net {

constexpr long kMaxRedirects = 5;

struct CurlDeleter {
  void operator()(CURL* curl) const noexcept { curl_easy_cleanup(curl); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

bool starts_with_nocase(std::string_view s, std::string_view prefix);
bool is_https(std::string_view url);

// One request's secure settings. Lives as long as the handle: libcurl keeps
// pointers to errbuf and to this object (the CA callback writes ca_error).
struct SecureRequest {
  std::string url;
  std::string ca_file;  // extra PEM bundle; empty = the system store only
  long connect_timeout_ms = 15000;
  long timeout_ms = 600000;  // whole request
  std::string user_agent = "rch";
  std::string request;   // "GET URL", for "GET URL failed: …"
  std::string transfer;  // "download of URL", for "… timed out" / "… interrupted"
  char errbuf[CURL_ERROR_SIZE] = {};
  std::string ca_error;  // why the extra bundle did not load
};

// Checks the URL's scheme, the timeouts and the CA file, then returns a
// handle with the URL and the secure options set: http and https only;
// redirects followed (at most kMaxRedirects) to http(s) only, and never
// from https to http; peer and host verified; the extra CA; the timeouts;
// no signals (DNS timeouts in a threaded process).
Result<CurlPtr> open_secure(SecureRequest& r);

// A libcurl failure in words, naming the URL (and the refused redirect target).
std::string curl_error(CURL* h, CURLcode rc, const SecureRequest& r);

}  // namespace rch::net
