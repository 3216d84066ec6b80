// Module rch.config: workers.toml, config.toml and the local paths, read once
// per process (the config dir comes from RCH_CONFIG_DIR or XDG defaults).
#include "core/config/config.hpp"
#include "core/config/paths.hpp"
#include "core/config/workers.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

void push_string_field(lua_State* L, const char* key, const std::string& value) {
  lua_pushlstring(L, value.data(), value.size());
  lua_setfield(L, -2, key);
}

void push_number_field(lua_State* L, const char* key, lua_Number value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

void push_worker(lua_State* L, const WorkerConfig& w) {
  lua_createtable(L, 0, 8);
  push_string_field(L, "id", w.id);
  push_string_field(L, "host", w.host);
  push_string_field(L, "user", w.user);
  push_number_field(L, "port", w.port);
  push_string_field(L, "identity_file", w.identity_file);
  push_string_field(L, "certificate_file", w.certificate_file);
  push_string_field(L, "root", w.root);
  push_number_field(L, "line", w.line);
  lua_createtable(L, static_cast<int>(w.tags.size()), 0);
  for (std::size_t i = 0; i < w.tags.size(); ++i) {
    lua_pushstring(L, w.tags[i].c_str());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_setfield(L, -2, "tags");
}

// paths() -> {config_dir=, state_dir=, home=, cache_dir=, data_dir=}
int l_config_paths(lua_State* L) {
  const Paths p = Paths::from_env();
  lua_createtable(L, 0, 5);
  push_string_field(L, "config_dir", p.config_dir.string());
  push_string_field(L, "state_dir", p.state_dir.string());
  push_string_field(L, "home", p.home.string());
  push_string_field(L, "cache_dir", p.cache_dir.string());
  push_string_field(L, "data_dir", p.data_dir.string());
  return 1;
}

// workers([file]) -> list of {id, host, user, port, identity_file, root, tags, line} | nil, err
int l_config_workers(lua_State* L) {
  const std::string file =
      lua_isnoneornil(L, 1) ? (Paths::from_env().config_dir / "workers.toml").string() : check_std_string(L, 1);
  auto workers = load_workers(file);
  if (!workers.ok()) return push_failure(L, workers.error());
  lua_createtable(L, static_cast<int>(workers->size()), 0);
  for (std::size_t i = 0; i < workers->size(); ++i) {
    push_worker(L, (*workers)[i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 1;
}

// settings([file]) -> config.toml as nested tables (defaults applied) | nil, err
int l_config_settings(lua_State* L) {
  const std::string file =
      lua_isnoneornil(L, 1) ? (Paths::from_env().config_dir / "config.toml").string() : check_std_string(L, 1);
  auto loaded = load_config(file);
  if (!loaded.ok()) return push_failure(L, loaded.error());
  const Config& c = loaded.value();
  lua_createtable(L, 0, 5);

  lua_createtable(L, 0, 12);
  push_number_field(L, "parallel", c.defaults.parallel);
  push_number_field(L, "probe_parallel", c.defaults.probe_parallel);
  push_number_field(L, "connect_timeout", static_cast<lua_Number>(c.defaults.connect_timeout.count()));
  push_number_field(L, "command_timeout", static_cast<lua_Number>(c.defaults.command_timeout.count()));
  push_string_field(L, "host_key_policy", std::string(to_string(c.defaults.host_key_policy)));
  push_string_field(L, "known_hosts", c.defaults.known_hosts.string());
  push_string_field(L, "ssh_config", c.defaults.ssh_config.string());
  push_number_field(L, "max_output_bytes", c.defaults.max_output_bytes);
  push_number_field(L, "min_transfer_mbps", c.defaults.min_transfer_mbps);
  push_number_field(L, "stall_timeout", static_cast<lua_Number>(c.defaults.stall_timeout.count()));
  push_number_field(L, "connect_retries", c.defaults.connect_retries);
  push_number_field(L, "connect_retry_delay", c.defaults.connect_retry_delay);
  lua_setfield(L, -2, "defaults");

  lua_createtable(L, 0, 4);
  push_number_field(L, "min_disk_mb", c.preflight.min_disk_mb);
  push_string_field(L, "rsync", std::string(to_string(c.preflight.rsync)));
  push_string_field(L, "zstd", std::string(to_string(c.preflight.zstd)));
  push_string_field(L, "rustup", std::string(to_string(c.preflight.rustup)));
  lua_setfield(L, -2, "preflight");

  lua_createtable(L, 0, 2);
  push_string_field(L, "rust", c.toolchain.rust);
  lua_pushboolean(L, c.toolchain.update);
  lua_setfield(L, -2, "update");
  lua_setfield(L, -2, "toolchain");

  lua_createtable(L, 0, 4);
  push_number_field(L, "keep_versions", c.deploy.keep_versions);
  push_string_field(L, "compress", c.deploy.compress ? "auto" : "never");
  push_string_field(L, "delta", c.deploy.delta ? "auto" : "never");
  push_string_field(L, "source", c.deploy.pull ? "pull" : "push");
  lua_setfield(L, -2, "deploy");

  lua_createtable(L, 0, 3);
  push_number_field(L, "percent", c.canary.percent);
  push_number_field(L, "wait", static_cast<lua_Number>(c.canary.wait.count()));
  push_number_field(L, "interval", static_cast<lua_Number>(c.canary.interval.count()));
  lua_setfield(L, -2, "canary");

  lua_createtable(L, 0, 7);
  push_string_field(L, "url", c.update.url);
  push_string_field(L, "channel", std::string(to_string(c.update.channel)));
  push_string_field(L, "minisign_pubkey", c.update.minisign_pubkey);
  push_string_field(L, "ca_file", c.update.ca_file.string());
  push_number_field(L, "keep", c.update.keep);
  push_number_field(L, "connect_timeout", static_cast<lua_Number>(c.update.connect_timeout.count()));
  push_number_field(L, "transfer_timeout", static_cast<lua_Number>(c.update.transfer_timeout.count()));
  lua_setfield(L, -2, "update");

  lua_createtable(L, 0, 2);
  lua_pushboolean(L, c.audit.syslog);
  lua_setfield(L, -2, "syslog");
  push_string_field(L, "syslog_socket", c.audit.syslog_socket.string());
  push_number_field(L, "rotate_mb", c.audit.rotate_mb);
  push_number_field(L, "keep_files", c.audit.keep_files);
  lua_setfield(L, -2, "audit");

  lua_createtable(L, 0, 1);
  push_number_field(L, "keep_deployments", c.state.keep_deployments);
  lua_setfield(L, -2, "state");

  lua_createtable(L, 0, 2);
  push_number_field(L, "timeout", static_cast<lua_Number>(c.http.timeout.count()));
  push_number_field(L, "max_body_mb", c.http.max_body_mb);
  lua_setfield(L, -2, "http");

  push_json(L, nlohmann::json::parse(c.policy_json));
  lua_setfield(L, -2, "policy");

  lua_createtable(L, 0, static_cast<int>(c.origins.size()));
  for (const auto& [key, where] : c.origins) push_string_field(L, key.c_str(), where);
  lua_setfield(L, -2, "origins");
  return 1;
}

}  // namespace

int luaopen_rch_config(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"paths", guarded<l_config_paths>},
      {"workers", guarded<l_config_workers>},
      {"settings", guarded<l_config_settings>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
