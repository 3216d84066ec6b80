// Module rch.store: durable state for deployments. Journals group-commit:
// appends made in the same loop turn (or while a flush runs) share one
// write+fsync on the pool. A task either waits for its line or queues lines
// and waits once (barrier) before its next remote step: durable before the
// worker's next step, without one disk flush per event.
#include <atomic>
#include <memory>

#include "core/crypto/hash_chain.hpp"
#include "core/crypto/sha256.hpp"
#include "core/log/log.hpp"
#include "core/store/file_lock.hpp"
#include "core/store/jsonl.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

const char kJournalMeta[] = "rch.store.journal";
const char kLockMeta[] = "rch.store.lock";

struct Waiter {
  std::uint64_t seq;  // durable once this many lines are on disk
  int task;
};

struct JournalBox {
  std::shared_ptr<JsonlWriter> writer;
  bool chained = false;       // each line gets prev_hash and seq (core/crypto/hash_chain), and <path>.head follows
  std::string syslog_socket;  // chained: also send each new head there ("" = not)
  std::vector<std::string> pending;
  std::uint64_t queued = 0;   // lines accepted so far
  std::uint64_t durable = 0;  // lines written and fsync'd so far
  std::vector<Waiter> waiters;
  std::string failed;  // after a failed flush every later append fails too
  bool flushing = false;
  bool scheduled = false;
  std::size_t flushes = 0;   // stats: group commit shows as flushes < lines
  int self_ref = LUA_NOREF;  // pins the userdata while lines are in flight
};

void start_flush(lua_State* L, JournalBox* box);

// The audit chain is linked at write time under the file's lock, so
// concurrent rch processes appending to one audit log still produce one
// unbroken chain; the head file and the syslog copy follow in the same lock.
Result<void> write_chain(JsonlWriter& writer, const std::vector<std::string>& lines, const std::string& syslog_socket) {
  return writer.append_batch_linked(lines, link_chain_entry, [&](const std::string& last) -> Result<void> {
    const ChainHead head{chain_seq_of(last).value_or(0), sha256_hex(last)};
    if (auto r = write_chain_head(writer.path(), head); !r) return r;
    if (!syslog_socket.empty()) {
      // Best effort: a syslog that is down must not stop a deployment; say so once.
      static std::atomic<bool> warned{false};
      if (auto r = send_chain_head_to_syslog(syslog_socket, writer.path(), head); !r && !warned.exchange(true)) {
        log::warn(r.error());
      }
    }
    return {};
  });
}

void schedule_flush(lua_State* L, JournalBox* box) {
  if (box->scheduled || box->flushing) return;
  box->scheduled = true;
  lua_State* main = engine_of(L).state();
  // Posted: every append made before the loop gets here joins this batch.
  engine_of(L).executor().post([main, box] {
    box->scheduled = false;
    start_flush(main, box);
  });
}

void wake(Engine& engine, JournalBox* box) {
  std::vector<Waiter> still;
  for (const Waiter& w : box->waiters) {
    if (!box->failed.empty()) {
      engine.resume_later(w.task, [error = box->failed](lua_State* co) { return push_failure(co, error); });
    } else if (w.seq <= box->durable) {
      engine.resume_later(w.task, [](lua_State* co) {
        lua_pushboolean(co, 1);
        return 1;
      });
    } else {
      still.push_back(w);
    }
  }
  box->waiters = std::move(still);
}

void start_flush(lua_State* L, JournalBox* box) {
  if (box->pending.empty()) {
    if (box->waiters.empty()) {
      luaL_unref(L, LUA_REGISTRYINDEX, box->self_ref);
      box->self_ref = LUA_NOREF;
    }
    return;
  }
  box->flushing = true;
  auto lines = std::make_shared<std::vector<std::string>>(std::move(box->pending));
  box->pending.clear();
  Engine& engine = engine_of(L);
  auto writer = box->writer;
  engine.executor().run_blocking([&engine, L, box, writer, lines, syslog = box->syslog_socket]() {
    auto result = std::make_shared<Result<void>>(box->chained ? write_chain(*writer, *lines, syslog)
                                                              : writer->append_batch(*lines));
    const std::size_t count = lines->size();
    return Executor::Completion([&engine, L, box, result, count]() {
      box->flushing = false;
      if (result->ok()) {
        box->durable += count;
        ++box->flushes;
      } else {
        box->failed = result->error();
      }
      wake(engine, box);
      start_flush(L, box);
    });
  });
}

void pin(lua_State* L, JournalBox* box) {
  if (box->self_ref != LUA_NOREF) return;
  lua_pushvalue(L, 1);
  box->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

// open_journal(path [, {chain = true, syslog_socket = PATH}]) -> journal | nil, err
// With chain, every line must be a JSON object; it is written with leading
// "prev_hash" and "seq" fields linking it to the line before it, and
// <path>.head (and syslog, when a socket is given) gets the new head.
int l_store_open_journal(lua_State* L) {
  const bool chained = opt_bool_field(L, 2, "chain", false);
  std::string syslog_socket = opt_string_field(L, 2, "syslog_socket", "");
  auto writer = JsonlWriter::open(check_std_string(L, 1));
  if (!writer.ok()) return push_failure(L, writer.error());
  auto* box = static_cast<JournalBox*>(lua_newuserdata(L, sizeof(JournalBox)));
  new (box) JournalBox{};
  box->writer = std::make_shared<JsonlWriter>(std::move(writer.value()));
  box->chained = chained;
  box->syslog_socket = std::move(syslog_socket);
  luaL_getmetatable(L, kJournalMeta);
  lua_setmetatable(L, -2);
  return 1;
}

// journal:append(line [, {wait = false}]) -> true | nil, err
// Waits (yields) until the line is fsync'd unless wait = false; then a later
// journal:barrier() waits for it. Appends from many tasks share flushes.
// A table is encoded as rch.json.encode would (no Lua string made for it: at
// 10k workers the interning of every line costs more than the encoding).
int l_journal_append(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  std::string line = lua_istable(L, 2) ? encode_json(L, 2) : check_std_string(L, 2);
  if (line.find('\n') != std::string::npos) throw Misuse("rch.store: a journal line cannot contain a newline");
  if (box->chained && (line.size() < 2 || line.front() != '{' || line.back() != '}')) {
    throw Misuse("rch.store: a chained journal takes JSON objects");
  }
  const bool wait = opt_bool_field(L, 3, "wait", true);
  if (!box->failed.empty()) return push_failure(L, box->failed);
  const int task = wait ? require_task(L, "rch.store journal:append") : 0;
  pin(L, box);
  box->pending.push_back(std::move(line));
  ++box->queued;
  schedule_flush(L, box);
  if (!wait) {
    lua_pushboolean(L, 1);
    return 1;
  }
  box->waiters.push_back({box->queued, task});
  return lua_yield(L, 0);
}

// journal:barrier() -> true | nil, err once every line appended so far is on disk (yields)
int l_journal_barrier(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  if (!box->failed.empty()) return push_failure(L, box->failed);
  if (box->durable >= box->queued) {
    lua_pushboolean(L, 1);
    return 1;
  }
  const int task = require_task(L, "rch.store journal:barrier");
  pin(L, box);
  box->waiters.push_back({box->queued, task});
  return lua_yield(L, 0);
}

int l_journal_path(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  lua_pushstring(L, box->writer->path().c_str());
  return 1;
}

// journal:stats() -> {lines=, flushes=}
int l_journal_stats(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  lua_createtable(L, 0, 2);
  lua_pushnumber(L, static_cast<lua_Number>(box->durable));
  lua_setfield(L, -2, "lines");
  lua_pushnumber(L, static_cast<lua_Number>(box->flushes));
  lua_setfield(L, -2, "flushes");
  return 1;
}

// journal:rotate(max_bytes, keep_files) -> {rotated=bool, removed={paths}} | nil, err   (yields)
// JsonlWriter::rotate_if_larger; only while nothing of this journal is in flight.
int l_journal_rotate(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  const auto max_bytes = static_cast<std::uint64_t>(luaL_checknumber(L, 2));
  const int keep_files = static_cast<int>(luaL_checkinteger(L, 3));
  if (box->flushing || box->scheduled || !box->pending.empty()) {
    throw Misuse("journal:rotate: lines of this journal are still being written");
  }
  auto writer = box->writer;
  return yield_blocking<Result<JsonlWriter::Rotated>>(
      L, "journal:rotate", [writer, max_bytes, keep_files] { return writer->rotate_if_larger(max_bytes, keep_files); },
      [](lua_State* co, Result<JsonlWriter::Rotated>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_createtable(co, 0, 2);
        lua_pushboolean(co, r->rotated);
        lua_setfield(co, -2, "rotated");
        lua_createtable(co, static_cast<int>(r->removed.size()), 0);
        for (std::size_t i = 0; i < r->removed.size(); ++i) {
          lua_pushstring(co, r->removed[i].c_str());
          lua_rawseti(co, -2, static_cast<int>(i + 1));
        }
        lua_setfield(co, -2, "removed");
        return 1;
      });
}

int l_journal_gc(lua_State* L) {
  auto* box = static_cast<JournalBox*>(luaL_checkudata(L, 1, kJournalMeta));
  box->~JournalBox();
  return 0;
}

// read_lines(path) -> list of complete lines | nil, err
int l_store_read_lines(lua_State* L) {
  auto lines = read_jsonl_lines(check_std_string(L, 1));
  if (!lines.ok()) return push_failure(L, lines.error());
  lua_createtable(L, static_cast<int>(lines->size()), 0);
  for (std::size_t i = 0; i < lines->size(); ++i) {
    lua_pushlstring(L, (*lines)[i].data(), (*lines)[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 1;
}

// each_json_line(path, fn [, {chain = true, after = N, fields = {NAME…}}]) -> lines, torn | nil, err
// Calls fn(value, line_number [, seq, sha256]) for every complete line, in
// order: value is the decoded line or false when it is not JSON; with chain,
// the seq it carries (nil without one) and the sha256 of the line; with
// after, only for the lines past line N (those are counted, not decoded); with
// fields, an object line needs only those fields (push_json_fields). No Lua
// string is made of the lines (at 100k workers the journal and audit log
// hold ~10^6 of them). fn must not yield. Returns the number of complete
// lines and the bytes after the last newline (a torn last line).
int l_store_each_json_line(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  const bool chain = opt_bool_field(L, 3, "chain", false);
  const lua_Number after = opt_number_field(L, 3, "after", 0);
  std::vector<std::string> fields;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "fields");
    if (!lua_isnil(L, -1)) fields = check_string_list(L, lua_gettop(L));
    lua_pop(L, 1);
  }
  const int top = lua_gettop(L);
  lua_Number count = 0;
  auto torn = for_each_jsonl_line(path, [&](std::string_view line) {
    if (++count <= after) return;
    lua_pushvalue(L, 2);
    bool decoded = false;
    try {
      decoded = fields.empty() ? push_json_text(L, line) : push_json_fields(L, line, fields);
    } catch (const std::runtime_error&) {  // {"$b64"} that is not base64: not JSON either, as for rch.json.decode
      lua_settop(L, top + 1);
    }
    if (!decoded) lua_pushboolean(L, 0);
    lua_pushnumber(L, count);
    int nargs = 2;
    if (chain) {
      const auto seq = chain_seq_of(line);
      if (seq) {
        lua_pushnumber(L, static_cast<lua_Number>(*seq));
      } else {
        lua_pushnil(L);
      }
      const std::string hash = sha256_hex(line);
      lua_pushlstring(L, hash.data(), hash.size());
      nargs = 4;
    }
    lua_call(L, nargs, 0);
  });
  if (!torn.ok()) return push_failure(L, torn.error());
  lua_pushnumber(L, count);
  lua_pushnumber(L, static_cast<lua_Number>(*torn));
  return 2;
}

// last_line(path) -> last complete line ("" if none) | nil, err
int l_store_last_line(lua_State* L) {
  auto line = read_last_jsonl_line(check_std_string(L, 1));
  if (!line.ok()) return push_failure(L, line.error());
  lua_pushlstring(L, line->data(), line->size());
  return 1;
}

// chain_head(path) -> {seq=, sha256=} | nil (no head file) | nil, err
int l_store_chain_head(lua_State* L) {
  auto head = read_chain_head(check_std_string(L, 1));
  if (!head.ok()) return push_failure(L, head.error());
  if (!head->has_value()) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 2);
  lua_pushnumber(L, static_cast<lua_Number>((*head)->seq));
  lua_setfield(L, -2, "seq");
  lua_pushlstring(L, (*head)->hash.data(), (*head)->hash.size());
  lua_setfield(L, -2, "sha256");
  return 1;
}

// chain_seq(line) -> the seq of an audit line | nil
int l_store_chain_seq(lua_State* L) {
  const auto seq = chain_seq_of(check_std_string(L, 1));
  if (!seq) return 0;
  lua_pushnumber(L, static_cast<lua_Number>(*seq));
  return 1;
}

// lock(path, purpose) -> lock | nil, err, held (true: someone holds it; the err names
// the holder. false: it could not be taken at all). Never waits.
int l_store_lock(lua_State* L) {
  bool held = false;
  auto lock = FileLock::try_acquire(check_std_string(L, 1), check_std_string(L, 2), &held);
  if (!lock.ok()) {
    push_failure(L, lock.error());
    lua_pushboolean(L, held);
    return 3;
  }
  auto* slot = static_cast<FileLock**>(lua_newuserdata(L, sizeof(FileLock*)));
  *slot = new FileLock(std::move(lock.value()));
  luaL_getmetatable(L, kLockMeta);
  lua_setmetatable(L, -2);
  return 1;
}

int l_lock_release(lua_State* L) {
  auto* slot = static_cast<FileLock**>(luaL_checkudata(L, 1, kLockMeta));
  delete *slot;
  *slot = nullptr;
  return 0;
}

}  // namespace

int luaopen_rch_store(lua_State* L) {
  static const luaL_Reg journal_methods[] = {
      {"append", guarded<l_journal_append>}, {"barrier", guarded<l_journal_barrier>}, {"path", guarded<l_journal_path>},
      {"stats", guarded<l_journal_stats>},   {"rotate", guarded<l_journal_rotate>},   {nullptr, nullptr}};
  register_type(L, kJournalMeta, l_journal_gc, journal_methods);
  static const luaL_Reg lock_methods[] = {{"release", guarded<l_lock_release>}, {nullptr, nullptr}};
  register_type(L, kLockMeta, l_lock_release, lock_methods);

  static const luaL_Reg functions[] = {
      {"open_journal", guarded<l_store_open_journal>},
      {"read_lines", guarded<l_store_read_lines>},
      {"each_json_line", guarded<l_store_each_json_line>},
      {"last_line", guarded<l_store_last_line>},
      {"lock", guarded<l_store_lock>},
      {"chain_head", guarded<l_store_chain_head>},
      {"chain_seq", guarded<l_store_chain_seq>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
