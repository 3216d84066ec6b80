// Module rch.sim: the simulated fleet (RCH_MOCK_SSH=1, rch fleet stress).
// Each operation runs at once on the loop thread against the in-memory
// model, then the calling task sleeps for the time the real operation would
// take (latency, bandwidth) before it resumes with the result. No pool
// thread is held, so 10,000 simulated workers cost timers, not threads.
#include <chrono>
#include <memory>

#include "core/config/paths.hpp"
#include "core/transport/sim_fleet.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

const char kFleetMeta[] = "rch.sim.fleet";

struct FleetBox {
  std::unique_ptr<SimFleet> fleet;
  bool persist = false;
};

FleetBox& check_fleet(lua_State* L) { return *static_cast<FleetBox*>(luaL_checkudata(L, 1, kFleetMeta)); }

// Sleeps the task for op.delay_ms, then resumes it with true | value | nil, err.
// A change (`mutates`) to the worker named by argument 2 goes to the journal first.
int finish(lua_State* L, const char* api, FleetBox& box, SimOp op, bool mutates) {
  if (mutates && op.ok && box.persist) {
    auto saved = box.fleet->record(check_std_string(L, 2));
    if (!saved.ok()) {
      op.ok = false;
      op.error = "simulated fleet state: " + saved.error();
    }
  }
  const int task = require_task(L, api);
  Engine& engine = engine_of(L);
  engine.executor().after(std::chrono::milliseconds(op.delay_ms), [&engine, task, op = std::move(op)] {
    engine.resume_later(task, [op](lua_State* co) {
      if (!op.ok) return push_failure(co, op.error);
      if (op.value.empty()) {
        lua_pushboolean(co, 1);
        return 1;
      }
      if (!push_json_text(co, op.value)) return push_failure(co, "simulated fleet: invalid JSON from the model");
      return 1;
    });
  });
  return lua_yield(L, 0);
}

// open({persist=, latency_ms=, fault_rate=, seed=, bandwidth_mb_s=}) -> fleet | nil, err.
// Defaults from the RCH_SIM_* variables.
int l_sim_open(lua_State* L) {
  const bool persist = opt_bool_field(L, 1, "persist", true);
  auto config = SimConfig::from_env(persist ? Paths::from_env().state_dir / "sim-fleet.json" : "");
  if (!config.ok()) return push_failure(L, config.error());
  if (!persist) config->state_file.clear();
  // Explicit options (rch fleet stress flags) win over RCH_SIM_* variables.
  config->latency_ms = static_cast<int>(opt_number_field(L, 1, "latency_ms", config->latency_ms));
  config->fault_rate = opt_number_field(L, 1, "fault_rate", config->fault_rate);
  config->seed = static_cast<std::uint64_t>(opt_number_field(L, 1, "seed", static_cast<lua_Number>(config->seed)));
  config->bandwidth_mb_s = opt_number_field(L, 1, "bandwidth_mb_s", config->bandwidth_mb_s);
  auto fleet = SimFleet::open(std::move(config.value()));
  if (!fleet.ok()) return push_failure(L, fleet.error());
  auto* box = static_cast<FleetBox*>(lua_newuserdata(L, sizeof(FleetBox)));
  new (box) FleetBox{std::move(fleet.value()), persist};
  luaL_getmetatable(L, kFleetMeta);
  lua_setmetatable(L, -2);
  return 1;
}

int l_fleet_connect(lua_State* L) {
  FleetBox& box = check_fleet(L);
  return finish(L, "rch.sim connect", box, box.fleet->connect(check_std_string(L, 2)), false);
}

int l_fleet_preflight(lua_State* L) {
  FleetBox& box = check_fleet(L);
  return finish(L, "rch.sim preflight", box, box.fleet->preflight(check_std_string(L, 2), check_std_string(L, 3)),
                false);
}

int l_fleet_transfer(lua_State* L) {
  FleetBox& box = check_fleet(L);
  auto op = box.fleet->transfer(check_std_string(L, 2), check_std_string(L, 3), check_std_string(L, 4),
                                static_cast<std::uint64_t>(luaL_checknumber(L, 5)));
  return finish(L, "rch.sim transfer", box, std::move(op), true);
}

int l_fleet_install(lua_State* L) {
  FleetBox& box = check_fleet(L);
  auto op = box.fleet->install(check_std_string(L, 2), check_std_string(L, 3), check_std_string(L, 4),
                               check_std_string(L, 5));
  return finish(L, "rch.sim install", box, std::move(op), true);
}

int l_fleet_rollback(lua_State* L) {
  FleetBox& box = check_fleet(L);
  return finish(L, "rch.sim rollback", box, box.fleet->rollback(check_std_string(L, 2), check_std_string(L, 3)), true);
}

int l_fleet_drain(lua_State* L) {
  FleetBox& box = check_fleet(L);
  auto op = box.fleet->drain(check_std_string(L, 2), static_cast<int>(luaL_checkinteger(L, 3)));
  return finish(L, "rch.sim drain", box, std::move(op), true);
}

int l_fleet_undrain(lua_State* L) {
  FleetBox& box = check_fleet(L);
  return finish(L, "rch.sim undrain", box, box.fleet->undrain(check_std_string(L, 2)), true);
}

int l_fleet_toolchain(lua_State* L) {
  FleetBox& box = check_fleet(L);
  return finish(L, "rch.sim toolchain", box, box.fleet->toolchain(check_std_string(L, 2), check_std_string(L, 3)),
                false);
}

int l_fleet_probe_agent(lua_State* L) {
  FleetBox& box = check_fleet(L);
  return finish(L, "rch.sim probe_agent", box, box.fleet->probe_agent(check_std_string(L, 2), lua_toboolean(L, 3) != 0),
                false);
}

int l_fleet_inspect(lua_State* L) {
  FleetBox& box = check_fleet(L);
  return finish(L, "rch.sim inspect", box, box.fleet->inspect(check_std_string(L, 2)), false);
}

// current_link(worker) -> where its current link points ("" = none), at once:
// the model's ground truth for rch fleet stress's checks (no simulated
// latency, no fault, no task needed).
int l_fleet_current_link(lua_State* L) {
  FleetBox& box = check_fleet(L);
  const std::string link = box.fleet->current_link(check_std_string(L, 2));
  lua_pushlstring(L, link.data(), link.size());
  return 1;
}

// exec(worker, argv, timeout) -> {code, out, err, timed_out, …} | nil, err (RCH_SIM_EXEC)
int l_fleet_exec(lua_State* L) {
  FleetBox& box = check_fleet(L);
  auto op =
      box.fleet->exec(check_std_string(L, 2), check_string_list(L, 3), static_cast<int>(luaL_optnumber(L, 4, 300)));
  return finish(L, "rch.sim exec", box, std::move(op), false);
}

// fault(worker) -> "none" | "connect" | "fail_at=STEP" | … (for stress reports)
int l_fleet_fault(lua_State* L) {
  FleetBox& box = check_fleet(L);
  const SimFault f = box.fleet->fault_of(check_std_string(L, 2));
  static const char* names[] = {"none", "connect", "fail_at", "disconnect_transfer", "slow_health", "unhealthy"};
  std::string name = names[static_cast<int>(f.kind)];
  if (f.kind == SimFaultKind::fail_at_step) name += "=" + f.step;
  lua_pushstring(L, name.c_str());
  return 1;
}

int l_fleet_gc(lua_State* L) {
  check_fleet(L).~FleetBox();
  return 0;
}

}  // namespace

int luaopen_rch_sim(lua_State* L) {
  static const luaL_Reg methods[] = {
      {"connect", guarded<l_fleet_connect>},
      {"preflight", guarded<l_fleet_preflight>},
      {"transfer", guarded<l_fleet_transfer>},
      {"install", guarded<l_fleet_install>},
      {"rollback", guarded<l_fleet_rollback>},
      {"drain", guarded<l_fleet_drain>},
      {"undrain", guarded<l_fleet_undrain>},
      {"toolchain", guarded<l_fleet_toolchain>},
      {"probe_agent", guarded<l_fleet_probe_agent>},
      {"fault", guarded<l_fleet_fault>},
      {"inspect", guarded<l_fleet_inspect>},
      {"current_link", guarded<l_fleet_current_link>},
      {"exec", guarded<l_fleet_exec>},
      {nullptr, nullptr},
  };
  register_type(L, kFleetMeta, l_fleet_gc, methods);
  static const luaL_Reg functions[] = {{"open", guarded<l_sim_open>}, {nullptr, nullptr}};
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
