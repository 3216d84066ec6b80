// zstd frames for uploads: a whole file compressed, and patches that a
// worker's `zstd -d --patch-from=BASE` (zstd >= 1.4.5) turns back into the
// target. Whole buffers in memory: an agent binary is tens of MB at most.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/util/result.hpp"

namespace rch {

// The frame of `data` at `level`, with its size and a checksum in the frame,
// and a window no bigger than a default `zstd -d` accepts (128 MiB).
Result<std::string> zstd_compress(std::string_view data, int level);

// `target` compressed with `base` as a raw prefix (ZSTD_CCtx_refPrefix), long
// mode and a window that spans both, as `zstd --patch-from=BASE` makes it.
Result<std::string> zstd_patch(std::string_view base, std::string_view target, int level);

// Decodes one frame; `base` is the prefix a patch was made against (empty
// for a plain frame). Fails on a corrupt frame, a wrong base that the
// checksum catches, or output beyond `max_size`.
Result<std::string> zstd_decompress(std::string_view frame, std::string_view base, std::size_t max_size);

}  // namespace rch
