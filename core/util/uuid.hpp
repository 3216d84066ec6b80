// Random identifiers: RFC 4122 version-4 UUIDs (deployment ids) and the
// kernel CSPRNG they are drawn from.
#pragma once

#include <cstddef>
#include <string>

namespace rch {

// Fills `size` bytes from getrandom(2). Throws std::system_error only if the
// kernel refuses, which on Linux ≥ 3.17 does not happen once booted.
void fill_random(void* buffer, std::size_t size);

// "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", lowercase hex, y in [89ab].
std::string uuid_v4();

}  // namespace rch
