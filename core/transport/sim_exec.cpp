// RCH_SIM_EXEC: the scripted-response file of the simulated fleet (see the header).
#include "core/transport/sim_exec.hpp"

#include <fnmatch.h>

#include <toml++/toml.h>

#include "core/store/atomic_file.hpp"

namespace rch {

Result<std::vector<SimExecRule>> load_sim_exec(const std::filesystem::path& file) {
  auto text = read_file(file);
  if (!text) return Error{"RCH_SIM_EXEC: " + text.error()};
  const std::string name = file.string();
  auto at = [&name](const toml::source_region& where, const std::string& message) {
    return make_error(name + ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column) + ": " +
                      message);
  };
  toml::table root;
  try {
    root = toml::parse(*text, name);
  } catch (const toml::parse_error& e) {
    return at(e.source(), std::string(e.description()));
  }
  std::vector<SimExecRule> rules;
  for (const auto& [key, node] : root) {
    const toml::array* list = node.as_array();
    if (key.str() != "exec" || list == nullptr || !list->is_array_of_tables())
      return at(key.source(), "expected only [[exec]] tables, found '" + std::string(key.str()) + "'");
    for (const toml::node& item : *list) {
      SimExecRule rule;
      rule.origin = name + ":" + std::to_string(item.source().begin.line);
      for (const auto& [k, v] : *item.as_table()) {
        const std::string_view field = k.str();
        auto text_of = [&](std::string& out) -> Result<void> {
          if (!v.is_string()) return at(v.source(), std::string(field) + " must be a string");
          out = v.as_string()->get();
          return {};
        };
        auto int_of = [&](int& out, std::int64_t lo, std::int64_t hi) -> Result<void> {
          const auto* i = v.as_integer();
          if (i == nullptr || i->get() < lo || i->get() > hi)
            return at(v.source(), std::string(field) + " must be an integer between " + std::to_string(lo) + " and " +
                                      std::to_string(hi));
          out = static_cast<int>(i->get());
          return {};
        };
        Result<void> r;
        if (field == "worker")
          r = text_of(rule.worker);
        else if (field == "command")
          r = text_of(rule.command);
        else if (field == "stdout")
          r = text_of(rule.out);
        else if (field == "stderr")
          r = text_of(rule.err);
        else if (field == "exit")
          r = int_of(rule.exit_code, 0, 255);
        else if (field == "delay_ms")
          r = int_of(rule.delay_ms, 0, 86'400'000);
        else
          r = at(k.source(), "unknown key '" + std::string(field) +
                                 "' in [[exec]] (worker, command, exit, stdout, stderr, delay_ms)");
        if (!r) return Error{r.error()};
      }
      rules.push_back(std::move(rule));
    }
  }
  return rules;
}

const SimExecRule* match_sim_exec(const std::vector<SimExecRule>& rules, const std::string& worker,
                                  const std::string& command_line) {
  for (const auto& rule : rules) {
    if (::fnmatch(rule.worker.c_str(), worker.c_str(), 0) == 0 &&
        ::fnmatch(rule.command.c_str(), command_line.c_str(), 0) == 0)
      return &rule;
  }
  return nullptr;
}

}  // namespace rch
