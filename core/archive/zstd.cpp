// zstd frames for uploads (see zstd.hpp), over libzstd's stable API.
#include "core/archive/zstd.hpp"

#include <zstd.h>

#include <memory>

namespace rch {
namespace {

struct CctxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DctxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
using Cctx = std::unique_ptr<ZSTD_CCtx, CctxFree>;

// 2^27: the largest window `zstd -d` decodes without --long or --memory.
constexpr int kMaxWindowLog = 27;
constexpr int kMinWindowLog = 10;

int window_log_for(std::size_t bytes) {
  int log = kMinWindowLog;
  while (log < kMaxWindowLog && (std::size_t{1} << log) < bytes) ++log;
  return log;
}

Result<std::string> failed(const char* what, std::size_t code) {
  return make_error(std::string(what) + ": " + ZSTD_getErrorName(code));
}

Result<Cctx> make_cctx(int level, int window_log, bool long_mode) {
  Cctx c(ZSTD_createCCtx());
  if (!c) return make_error("zstd: out of memory");
  const std::pair<ZSTD_cParameter, int> params[] = {
      {ZSTD_c_compressionLevel, level},
      {ZSTD_c_windowLog, window_log},
      {ZSTD_c_enableLongDistanceMatching, long_mode ? 1 : 0},
      {ZSTD_c_checksumFlag, 1},
      {ZSTD_c_contentSizeFlag, 1},
  };
  for (const auto& [param, value] : params) {
    const std::size_t r = ZSTD_CCtx_setParameter(c.get(), param, value);
    if (ZSTD_isError(r)) return make_error(std::string("zstd parameter: ") + ZSTD_getErrorName(r));
  }
  return c;
}

Result<std::string> compress_with(ZSTD_CCtx* c, std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t n = ZSTD_compress2(c, out.data(), out.size(), data.data(), data.size());
  if (ZSTD_isError(n)) return failed("zstd compression failed", n);
  out.resize(n);
  return out;
}

}  // namespace

Result<std::string> zstd_compress(std::string_view data, int level) {
  auto c = make_cctx(level, window_log_for(data.size()), data.size() > (std::size_t{8} << 20));
  if (!c) return Error{c.error()};
  return compress_with(c->get(), data);
}

Result<std::string> zstd_patch(std::string_view base, std::string_view target, int level) {
  // The window spans the base and the target, so that every byte of the
  // target may refer back to any byte of the base (as --patch-from does).
  auto c = make_cctx(level, window_log_for(base.size() + target.size()), true);
  if (!c) return Error{c.error()};
  const std::size_t r = ZSTD_CCtx_refPrefix(c->get(), base.data(), base.size());
  if (ZSTD_isError(r)) return failed("zstd patch base", r);
  return compress_with(c->get(), target);
}

Result<std::string> zstd_decompress(std::string_view frame, std::string_view base, std::size_t max_size) {
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR) return make_error("not a zstd frame");
  if (size == ZSTD_CONTENTSIZE_UNKNOWN) return make_error("zstd frame without a content size");
  if (size > max_size) {
    return make_error("zstd frame decodes to " + std::to_string(size) + " bytes, more than " +
                      std::to_string(max_size));
  }
  std::unique_ptr<ZSTD_DCtx, DctxFree> d(ZSTD_createDCtx());
  if (!d) return make_error("zstd: out of memory");
  std::size_t r = ZSTD_DCtx_setParameter(d.get(), ZSTD_d_windowLogMax, kMaxWindowLog);
  if (!ZSTD_isError(r) && !base.empty()) r = ZSTD_DCtx_refPrefix(d.get(), base.data(), base.size());
  if (ZSTD_isError(r)) return failed("zstd decoder", r);
  std::string out(static_cast<std::size_t>(size), '\0');
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  // r is 0 once the frame, its checksum included, is complete; a call that
  // moves nothing means the frame was cut short.
  do {
    const std::size_t in_before = in.pos, out_before = o.pos;
    r = ZSTD_decompressStream(d.get(), &o, &in);
    if (ZSTD_isError(r)) return failed("zstd frame does not decode", r);
    if (r != 0 && in.pos == in_before && o.pos == out_before) break;
  } while (r != 0);
  if (r != 0 || in.pos != in.size || o.pos != o.size) return make_error("zstd frame is truncated or has trailing data");
  return out;
}

}  // namespace rch
