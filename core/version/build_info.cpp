// Only this file sees the generated header, so a version bump rebuilds one object.
// Test builds of the agent override it (RCH_VERSION_OVERRIDE) to get a second
// version from the same sources for upgrade and rollback tests.
#include "core/version/build_info.hpp"

#include "build_version.hpp"

namespace rch {
#ifdef RCH_VERSION_OVERRIDE
const char* build_version() { return RCH_VERSION_OVERRIDE; }
#else
const char* build_version() { return RCH_BUILD_VERSION; }
#endif
}  // namespace rch
