// Only this file sees the generated header, so a version bump rebuilds one object.
#include "core/version/build_info.hpp"

#include "build_version.hpp"

namespace rch {
const char* build_version() { return RCH_BUILD_VERSION; }
}  // namespace rch
