// The one JSON library of the C++ side (nlohmann) and its one way to write:
// compact, on one line, invalid UTF-8 replaced by U+FFFD instead of throwing
// (a job's argv, a path or an error message may hold any bytes). Included
// only by the few files that read or write JSON, to keep builds fast.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace rch {

using Json = nlohmann::json;

inline std::string dump_json(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace rch
