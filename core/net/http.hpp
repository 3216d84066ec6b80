// One HTTP(S) request for policy scripts (rch.http): any method, headers and
// body in; the final response's status, headers and body out, whatever the
// status (a 500 from a metrics server is an answer, not a transport error).
// The rules of downloads hold: http(s) only, redirects only to http(s) and
// never from https to http, TLS always verified (an extra CA may be added),
// a whole-request timeout, and a cap on the body.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

inline constexpr std::uint64_t kDefaultHttpMaxBody = 8u << 20;

struct HttpRequest {
  std::string method = "GET";  // an HTTP token: GET, POST, PUT, …
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // no CR/LF in them
  std::string body;                                          // sent when not empty (or the method is POST)
  std::string ca_file;                                       // trusted in addition to the system store
  double timeout_s = 30;                                     // the whole request, redirects included; > 0
  std::uint64_t max_body_bytes = kDefaultHttpMaxBody;        // a longer response body is an error
  std::string user_agent = "rch";
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // of the final response; names lower-case, repeats joined by ", "
  std::string body;
};

Result<HttpResponse> http_request(const HttpRequest& request);

}  // namespace rch
