// Module rch.archive: safe extraction of release tarballs (core/archive over
// libarchive) on the pool: regular files and directories only, nothing
// outside the destination, bounded size; and the zstd frames and patches
// that deploy uploads (core/archive/zstd), made on the pool and written
// atomically.
#include "core/archive/extract.hpp"
#include "core/archive/zstd.hpp"
#include "core/crypto/sha256.hpp"
#include "core/store/atomic_file.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

// extract(archive, dest_dir [, {max_total_bytes=, max_entries=}]) -> list of
// extracted files (relative paths) | nil, err naming the archive and entry  (yields)
int l_archive_extract(lua_State* L) {
  const std::string archive = check_std_string(L, 1);
  const std::string dest = check_std_string(L, 2);
  ExtractLimits limits;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    const lua_Number bytes = opt_number_field(L, 3, "max_total_bytes", static_cast<lua_Number>(limits.max_total_bytes));
    const lua_Number entries = opt_number_field(L, 3, "max_entries", static_cast<lua_Number>(limits.max_entries));
    if (bytes <= 0 || entries <= 0) throw Misuse("rch.archive.extract: limits must be > 0");
    limits.max_total_bytes = static_cast<std::uint64_t>(bytes);
    limits.max_entries = static_cast<std::size_t>(entries);
  }
  return yield_blocking<Result<std::vector<std::string>>>(
      L, "rch.archive.extract", [archive, dest, limits] { return extract_tar_gz_safely(archive, dest, limits); },
      [](lua_State* co, Result<std::vector<std::string>>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_createtable(co, static_cast<int>(r->size()), 0);
        for (std::size_t i = 0; i < r->size(); ++i) {
          lua_pushlstring(co, (*r)[i].data(), (*r)[i].size());
          lua_rawseti(co, -2, static_cast<int>(i + 1));
        }
        return 1;
      });
}

// An agent binary is tens of MB: a frame claiming more than this is corrupt.
constexpr std::size_t kMaxArtifactBytes = std::size_t{1} << 30;

// The bytes of `path`, which must have the sha256 `want` (read once, then
// hashed, so what is used is what was checked).
Result<std::string> read_checked(const std::string& path, const std::string& want) {
  auto data = read_file(path);
  if (!data) return data;
  if (const std::string got = sha256_hex(*data); got != want) {
    return make_error(path + " has sha256 " + got + ", expected " + want);
  }
  return data;
}

// The bytes of an artifact kept raw, or zstd-compressed (`zst`) in the cache.
Result<std::string> read_artifact(const std::string& path, bool zst, const std::string& want) {
  if (!zst) return read_checked(path, want);
  auto frame = read_file(path);
  if (!frame) return frame;
  auto data = zstd_decompress(*frame, {}, kMaxArtifactBytes);
  if (!data) return make_error(path + ": " + data.error());
  if (const std::string got = sha256_hex(*data); got != want) {
    return make_error(path + " decodes to sha256 " + got + ", expected " + want);
  }
  return data;
}

void push_size(lua_State* L, std::size_t n) { lua_pushnumber(L, static_cast<lua_Number>(n)); }

// zstd_compress{src=, sha256=, out=, level=, max_ratio=} -> frame size |
// false, ratio | nil, err  (yields). Writes `out` only when the data
// compresses: a fast level-1 pass first measures the ratio, and data that
// stays above max_ratio of its size (already compressed) is not worth the
// worker's decode.
int l_archive_zstd_compress(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const std::string src = opt_string_field(L, 1, "src", "");
  const std::string sha = opt_string_field(L, 1, "sha256", "");
  const std::string out = opt_string_field(L, 1, "out", "");
  const int level = static_cast<int>(opt_number_field(L, 1, "level", 9));
  const double max_ratio = opt_number_field(L, 1, "max_ratio", 0.9);
  if (src.empty() || sha.empty() || out.empty()) throw Misuse("rch.archive.zstd_compress: src, sha256, out required");
  struct Out {
    std::size_t size = 0;
    double ratio = 1;
  };
  return yield_blocking<Result<Out>>(
      L, "rch.archive.zstd_compress",
      [=]() -> Result<Out> {
        auto data = read_checked(src, sha);
        if (!data) return Error{data.error()};
        auto probe = zstd_compress(*data, 1);
        if (!probe) return Error{probe.error()};
        Out o;
        o.ratio = data->empty() ? 1.0 : static_cast<double>(probe->size()) / static_cast<double>(data->size());
        if (o.ratio > max_ratio) return o;
        auto frame = level == 1 ? std::move(probe) : zstd_compress(*data, level);
        if (!frame) return Error{frame.error()};
        o.size = frame->size();
        auto written = write_file_atomic(out, *frame);
        if (!written) return Error{written.error()};
        return o;
      },
      [](lua_State* co, Result<Out>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        if (r->size == 0) {
          lua_pushboolean(co, 0);
          lua_pushnumber(co, r->ratio);
          return 2;
        }
        push_size(co, r->size);
        return 1;
      });
}

// zstd_patch{base=, base_zst=, base_sha256=, target=, target_sha256=, out=,
// level=} -> patch size | nil, err  (yields). The base is a raw file or a
// frame of the transfer cache (base_zst); both files are checked against
// their sha256, and the patch is decoded once here and must give the target
// before it is written.
int l_archive_zstd_patch(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const std::string base = opt_string_field(L, 1, "base", "");
  const bool base_zst = opt_bool_field(L, 1, "base_zst", false);
  const std::string base_sha = opt_string_field(L, 1, "base_sha256", "");
  const std::string target = opt_string_field(L, 1, "target", "");
  const std::string target_sha = opt_string_field(L, 1, "target_sha256", "");
  const std::string out = opt_string_field(L, 1, "out", "");
  const int level = static_cast<int>(opt_number_field(L, 1, "level", 9));
  if (base.empty() || base_sha.empty() || target.empty() || target_sha.empty() || out.empty()) {
    throw Misuse("rch.archive.zstd_patch: base, base_sha256, target, target_sha256, out required");
  }
  return yield_blocking<Result<std::size_t>>(
      L, "rch.archive.zstd_patch",
      [=]() -> Result<std::size_t> {
        auto from = read_artifact(base, base_zst, base_sha);
        if (!from) return Error{from.error()};
        auto to = read_checked(target, target_sha);
        if (!to) return Error{to.error()};
        auto patch = zstd_patch(*from, *to, level);
        if (!patch) return Error{patch.error()};
        auto back = zstd_decompress(*patch, *from, to->size());
        if (!back || *back != *to) return make_error("the zstd patch for " + target + " does not rebuild it");
        auto written = write_file_atomic(out, *patch);
        if (!written) return Error{written.error()};
        return patch->size();
      },
      [](lua_State* co, Result<std::size_t>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        push_size(co, *r);
        return 1;
      });
}

}  // namespace

int luaopen_rch_archive(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"extract", guarded<l_archive_extract>},
      {"zstd_compress", guarded<l_archive_zstd_compress>},
      {"zstd_patch", guarded<l_archive_zstd_patch>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
