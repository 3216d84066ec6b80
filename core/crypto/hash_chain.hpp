// The audit log's hash chain. Every entry is a JSON object that starts
// {"prev_hash":"<sha256 of the previous line>","seq":N, … so an entry that is
// edited, removed or reordered breaks the chain, and the chain's head (the
// last seq and the hash of its line) is kept apart from the log, in
// <log>.head and optionally in syslog, so a log cut short is visible too.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/util/result.hpp"

namespace rch {

struct ChainHead {
  std::uint64_t seq = 0;  // entries in the chain so far
  std::string hash;       // sha256 of the line with that seq
};

// `line` (a JSON object) linked after `previous` (the last line of the log,
// "" at its start): prev_hash and the next seq go first.
std::string link_chain_entry(const std::string& previous, const std::string& line);

// The seq a linked line carries; nullopt for a line without one.
std::optional<std::uint64_t> chain_seq_of(std::string_view line);

std::filesystem::path chain_head_path(const std::filesystem::path& log);

// Rewrites <log>.head in place (one small pwrite + fsync, not a rename: it is
// updated after every batch, under the log's lock).
Result<void> write_chain_head(const std::filesystem::path& log, const ChainHead& head);

// nullopt when there is no head file (a log written before heads existed).
Result<std::optional<ChainHead>> read_chain_head(const std::filesystem::path& log);

// One datagram "<PRI>rch-audit[pid]: head of LOG: seq=N sha256=H" to a
// syslog socket (/dev/log, journald's too), where the operator's log
// collection keeps a copy a local user cannot rewrite.
Result<void> send_chain_head_to_syslog(const std::string& socket_path, const std::filesystem::path& log,
                                       const ChainHead& head);

}  // namespace rch
