-- The simulated transport's controller lease behaves as the real one: not
-- held until taken, held until released. (It said "held" from the start, so
-- lease.take never took it and preflight read every worker's facts twice.)
local sim = require "rch.transport.sim"
local lease = require "rch.deploy.lease"

sim.configure({ persist = false, latency_ms = 0, fault_rate = 0, seed = 1 })
local worker = { id = "sim-000001", host = "sim", user = "", port = 22, root = "~/.rch", tags = {} }
local conn = assert(sim.open(worker))
assert(conn:has_lease() == false, "a new session holds no lease")
local facts = assert(conn:preflight(nil, "0.1.0"))
local taken, read = lease.take(conn, worker.id, facts.root, "test", 0, 30, { target = "0.1.0" })
assert(taken == true and conn:has_lease(), "lease.take took the lease")
assert(read == facts, "the facts read under the lease are those its preflight read")
local again, reread = lease.take(conn, worker.id, facts.root, "test", 0, 30, { target = "0.1.0" })
assert(again == true and reread == nil, "a held lease is not taken twice")
conn:release_lease()
assert(conn:has_lease() == false, "released")
print("sim_lease_test: ok")
