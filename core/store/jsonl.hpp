// Append-only JSON Lines journals (deployment journal, history, audit): every
// append is one write(2) plus fsync, so a crash leaves at most a torn last
// line, which the reader drops. Lines are opaque strings here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

class JsonlWriter {
 public:
  // Opens for append (creating the file 0644 and its parent directories). A
  // torn last line left by a crashed writer is cut off, so the next append
  // does not glue onto it.
  static Result<JsonlWriter> open(const std::filesystem::path& path);

  JsonlWriter(JsonlWriter&& other) noexcept;
  JsonlWriter& operator=(JsonlWriter&& other) noexcept;
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;
  ~JsonlWriter();

  // Durable when it returns. Rejects a line containing '\n'.
  Result<void> append(std::string_view line);
  // Group commit: all lines in one write(2) and one fsync; nothing is written
  // if any line contains '\n'.
  Result<void> append_batch(const std::vector<std::string>& lines);

  // Like append_batch, but each line is first passed through link(previous
  // line, line), where the previous line is read from the file under the same
  // lock: several processes can extend a hash chain without breaking it.
  // `written(last line)` then runs after the fsync, still under the lock (the
  // audit chain's head is updated there, in step with the log).
  using Linker = std::function<std::string(const std::string& previous, const std::string& line)>;
  using AfterWrite = std::function<Result<void>(const std::string& last_line)>;
  Result<void> append_batch_linked(const std::vector<std::string>& lines, const Linker& link,
                                   const AfterWrite& written = {});

  // Rotation, under the same lock as appends: when the file has reached
  // `max_bytes`, path.N … path.1 move up one, the file becomes path.1 and a new
  // empty one takes its place; files beyond path.`keep_files` are deleted.
  // Another process appending to the old file notices (its fd no longer is
  // the path) and reopens. A linked batch written to the new, empty file
  // links to the last line of path.1, so a hash chain continues across files.
  struct Rotated {
    bool rotated = false;
    std::vector<std::filesystem::path> removed;
  };
  Result<Rotated> rotate_if_larger(std::uint64_t max_bytes, int keep_files);

  const std::filesystem::path& path() const { return path_; }

 private:
  JsonlWriter(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  Result<void> write_locked(std::string_view bytes, const std::function<Result<std::string>()>& compose = {},
                            const std::function<Result<void>()>& after = {});

  int fd_ = -1;
  std::filesystem::path path_;
};

// path.N: the Nth most recent rotated file of a JSONL log.
std::filesystem::path rotated_path(const std::filesystem::path& path, int n);

// The complete lines of the file, without their '\n'. A final line without
// '\n' (a crash mid-write) is dropped, not an error.
Result<std::vector<std::string>> read_jsonl_lines(const std::filesystem::path& path);

// Calls fn with every complete line of the file, in order, reading it a block
// at a time (a 100k-worker audit log is never whole in memory).
// @return the bytes after the last newline (a torn last line: 0 when none)
Result<std::size_t> for_each_jsonl_line(const std::filesystem::path& path,
                                        const std::function<void(std::string_view)>& fn);

// The last complete line of a JSONL file ("" when the file is missing or has
// none), read backwards from the end so a long audit log costs nothing.
Result<std::string> read_last_jsonl_line(const std::filesystem::path& path);

}  // namespace rch
