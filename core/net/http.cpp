// http_request over libcurl with the shared secure setup (curl_common).
#include "core/net/http.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <string_view>

#include "core/net/curl_common.hpp"

namespace rch {
namespace {

struct SlistDeleter {
  void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

bool token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), token_char); }

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

struct Exchange {
  const HttpRequest& request;
  HttpResponse response;
  std::string error;  // set when a callback stops the transfer
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto& x = *static_cast<Exchange*>(user);
  const std::string_view line(data, size * count);
  try {
    // Each response (redirects bring several) starts afresh: only the last one's headers are kept.
    if (net::starts_with_nocase(line, "HTTP/")) {
      x.response.headers.clear();
    } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
      std::string name = lower(std::string(trim(line.substr(0, colon))));
      const std::string_view value = trim(line.substr(colon + 1));
      auto [it, fresh] = x.response.headers.try_emplace(name, value);
      if (!fresh) it->second.append(", ").append(value);
    }
    return size * count;
  } catch (const std::exception& e) {
    x.error = e.what();
    return 0;
  }
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto& x = *static_cast<Exchange*>(user);
  const std::size_t n = size * count;
  if (x.response.body.size() + n > x.request.max_body_bytes) {
    x.error = "response of " + x.request.method + " " + x.request.url + " is over the limit of " +
              std::to_string(x.request.max_body_bytes) + " bytes";
    return 0;
  }
  try {
    x.response.body.append(data, n);
  } catch (const std::exception& e) {
    x.error = e.what();
    return 0;
  }
  return n;
}

}  // namespace

Result<HttpResponse> http_request(const HttpRequest& request) {
  const std::string what = request.method + " " + request.url;
  if (!is_token(request.method)) return make_error("invalid HTTP method '" + request.method + "'");
  if (!(request.timeout_s > 0) || request.timeout_s > 86400)
    return make_error(what + ": the timeout must be between 0 and 86400 seconds");
  for (const auto& [name, value] : request.headers) {
    if (!is_token(name)) return make_error(what + ": invalid header name '" + name + "'");
    if (value.find_first_of("\r\n") != std::string::npos || value.find('\0') != std::string::npos)
      return make_error(what + ": header " + name + " contains a line break");
  }

  net::SecureRequest secure;
  secure.url = request.url;
  secure.ca_file = request.ca_file;
  secure.timeout_ms = std::max(1L, std::lround(request.timeout_s * 1000));
  secure.connect_timeout_ms = secure.timeout_ms;
  secure.user_agent = request.user_agent;
  secure.request = what;
  secure.transfer = what;
  auto curl = net::open_secure(secure);
  if (!curl) return Error{curl.error()};
  CURL* h = curl->get();

  Exchange x{request, {}, {}};
  SlistPtr headers;
  for (const auto& [name, value] : request.headers) {
    // "Name;" is libcurl's way of sending a header with an empty value.
    const std::string line = value.empty() ? name + ";" : name + ": " + value;
    curl_slist* grown = curl_slist_append(headers.get(), line.c_str());
    if (grown == nullptr) return make_error(what + ": out of memory for the headers");
    static_cast<void>(headers.release());
    headers.reset(grown);
  }
  // No "Expect: 100-continue" round trip before larger bodies.
  if (curl_slist* grown = curl_slist_append(headers.get(), "Expect:"); grown != nullptr) {
    static_cast<void>(headers.release());
    headers.reset(grown);
  }

  CURLcode set = CURLE_OK;
  auto opt = [&set](CURLcode rc) {
    if (set == CURLE_OK) set = rc;
  };
  opt(curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get()));
  opt(curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header));
  opt(curl_easy_setopt(h, CURLOPT_HEADERDATA, &x));
  opt(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body));
  opt(curl_easy_setopt(h, CURLOPT_WRITEDATA, &x));
  // Refused before the body arrives when the server announces its size.
  opt(curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(request.max_body_bytes)));
  if (request.method == "HEAD") {
    opt(curl_easy_setopt(h, CURLOPT_NOBODY, 1L));
  } else if (!request.body.empty() || request.method == "POST") {
    opt(curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size())));
    opt(curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data()));
  }
  if (request.method != "GET" && request.method != "HEAD" && request.method != "POST")
    opt(curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str()));
  if (set != CURLE_OK) return make_error(what + ": libcurl refused an option: " + curl_easy_strerror(set));

  const CURLcode rc = curl_easy_perform(h);
  if (!x.error.empty()) return make_error(x.error);
  if (rc == CURLE_FILESIZE_EXCEEDED)
    return make_error("response of " + what + " is over the limit of " + std::to_string(request.max_body_bytes) +
                      " bytes");
  if (rc != CURLE_OK) return make_error(net::curl_error(h, rc, secure));
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x.response.status);
  return std::move(x.response);
}

}  // namespace rch
