// The version this build of rch was configured with (one number for rch, rchd, rch-wkr).
#pragma once

namespace rch {
const char* build_version();
}
